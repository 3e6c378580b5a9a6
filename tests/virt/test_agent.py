"""cloudpanel.virt.agent against real libvirt code: the test:/// driver has no guest agent
for most commands, so it shows how 'not supported' maps to AgentUnavailable. (The qemu
driver's 'no channel' and 'not connected' answers are tested on the lab in tests/instances.)"""

from __future__ import annotations

import ipaddress
import uuid

import pytest

from cloudpanel import errors
from cloudpanel.virt import AgentUnavailable, NotFound, agent, domain_xml, domains, get_pool
from cloudpanel.virt.types import GuestFilesystem

TEST_URI = "test:///default"


@pytest.fixture
def domain():
    """A running domain of the test driver (its own, so tests do not share state)."""
    name = f"agent-{uuid.uuid4().hex[:8]}"
    spec = domain_xml.DomainSpec(
        name=name,
        uuid=str(uuid.uuid4()),
        vcpus=1,
        memory_mib=64,
        disks=[domain_xml.DiskSpec(path="/guest.img", format="raw")],
        nics=[domain_xml.NicSpec(mac="52:54:00:12:34:56", network="default")],
    )
    domains.define_domain(TEST_URI, domain_xml.build_domain(spec))
    domains.start_domain(TEST_URI, name)
    yield name
    # (The test driver refuses undefine's snapshot-metadata flags: undefine it plainly.)
    domains.destroy_domain(TEST_URI, name)
    get_pool().call(TEST_URI, lambda conn: conn.lookupByName(name).undefine())


def test_agent_unavailable_is_a_conflict_not_a_failure():
    # The API answers a Conflict with 409 and the pages show its message; never a 500/502.
    assert issubclass(AgentUnavailable, errors.Conflict)


def test_unsupported_ping_and_guest_info_are_agent_unavailable(domain):
    with pytest.raises(AgentUnavailable, match="host does not support the guest agent") as exc:
        agent.agent_ping(TEST_URI, domain)
    assert "virDomainQemuAgentCommand" in exc.value.detail  # libvirt's words kept for admins
    assert agent.agent_answers(TEST_URI, domain) is False
    with pytest.raises(AgentUnavailable, match="host does not support"):
        agent.guest_info(TEST_URI, domain)


def test_unsupported_agent_shutdown_flag_is_agent_unavailable(domain):
    # The test driver refuses the flag itself ("unsupported flags"): no agent shutdown there.
    with pytest.raises(AgentUnavailable, match="host does not support"):
        agent.agent_shutdown(TEST_URI, domain)
    assert domains.domain_state(TEST_URI, domain) == "running"


def test_stopped_domain_has_no_agent(domain):
    domains.destroy_domain(TEST_URI, domain)
    for call in (agent.agent_ping, agent.guest_info, agent.agent_addresses, agent.agent_shutdown):
        with pytest.raises(AgentUnavailable, match="not running"):
            call(TEST_URI, domain)
    with pytest.raises(AgentUnavailable, match="not running"):
        agent.set_user_password(TEST_URI, domain, "root", "s3cret")


def test_missing_domain_stays_not_found():
    with pytest.raises(NotFound):
        agent.agent_ping(TEST_URI, "no-such-domain")


def test_agent_addresses_come_from_the_agent_source(domain):
    # The test driver answers the agent source with its canned interface; the parsing is ours.
    interfaces = agent.guest_interfaces(TEST_URI, domain)
    assert [i.name for i in interfaces] == ["testnet0"]
    (address,) = interfaces[0].addresses
    # 192.168.<122 + the domain's index in this process's test driver>.x/24: other tests'
    # domains in the same process move the subnet, not the shape.
    parsed = ipaddress.ip_interface(address)
    assert parsed.version == 4 and parsed.network.prefixlen == 24
    assert parsed.ip in ipaddress.ip_network("192.168.0.0/16")
    assert agent.agent_addresses(TEST_URI, domain) == [address.removesuffix("/24")]


def test_set_user_password_and_freeze_thaw_where_the_driver_has_them(domain):
    agent.set_user_password(TEST_URI, domain, "root", "s3cret")
    assert agent.fs_freeze(TEST_URI, domain) >= 1
    assert agent.fs_thaw(TEST_URI, domain) >= 1


def test_quiesced_snapshot_freezes_and_thaws_around_an_internal_snapshot(domain):
    snap = domains.snapshot_create(TEST_URI, domain, "q1", quiesce=True)
    assert snap.name == "q1"
    domains.snapshot_delete(TEST_URI, domain, "q1")


def test_parse_guest_info_reads_libvirts_typed_parameters():
    info = agent.parse_guest_info(
        {
            "os.id": "debian",
            "os.name": "Debian GNU/Linux",
            "os.pretty-name": "Debian GNU/Linux 12 (bookworm)",
            "os.version": "12 (bookworm)",
            "os.kernel-release": "6.1.0-28-cloud-amd64",
            "hostname": "web1",
            "timezone.name": "UTC",
            "fs.count": 2,
            "fs.0.mountpoint": "/",
            "fs.0.name": "vda1",
            "fs.0.fstype": "ext4",
            "fs.0.used-bytes": 1000,
            "fs.0.total-bytes": 4000,
            "fs.1.mountpoint": "/boot/efi",
            "fs.1.name": "vda15",
            "fs.1.fstype": "vfat",
        }
    )
    assert info.os_name == "Debian GNU/Linux 12 (bookworm)"
    assert info.os_version == "12 (bookworm)"
    assert info.hostname == "web1"
    assert info.filesystems == [
        GuestFilesystem("/", "vda1", "ext4", 1000, 4000),
        GuestFilesystem("/boot/efi", "vda15", "vfat", None, None),
    ]
    assert agent.parse_guest_info({}).filesystems == []


def test_raw_agent_commands_map_the_same_way(domain):
    with pytest.raises(AgentUnavailable, match="host does not support"):
        agent.agent_command(TEST_URI, domain, "guest-info")
    with pytest.raises(AgentUnavailable, match="host does not support"):
        agent.guest_read_file(TEST_URI, domain, "/etc/hostname")
