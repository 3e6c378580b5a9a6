"""Volume rows: written before libvirt makes a volume, marked ready once it exists,
removed with the volume. Operations call these; nothing else creates volumes for instances."""

from __future__ import annotations

from cloudpanel.virt import storage

from .models import Instance, Volume


def volume_plan(
    *, instance: Instance, pool: str, name: str, role: str, fmt: str = "qcow2", capacity: int = 0
) -> Volume:
    """Record a volume about to be created (state creating) on the instance's host."""
    return Volume.objects.create(
        host=instance.host,
        instance=instance,
        pool=pool,
        name=name,
        role=role,
        format=fmt,
        capacity_bytes=capacity,
    )


def volume_ready(volume: Volume, info: storage.VolumeInfo) -> Volume:
    """libvirt made the volume: keep its path and sizes."""
    volume.path = info.path
    volume.capacity_bytes = info.capacity_bytes
    volume.allocation_bytes = info.allocation_bytes
    volume.state = Volume.State.READY
    volume.save(update_fields=["path", "capacity_bytes", "allocation_bytes", "state"])
    return volume


def volume_remove(uri: str, volume: Volume) -> None:
    """Delete the volume from its host (already gone is fine), then its row."""
    storage.delete_volume(uri, volume.pool, volume.name)
    volume.delete()


def root_volume(instance: Instance) -> Volume | None:
    volumes = list(instance.volumes.all())
    return next((v for v in volumes if v.role == Volume.Role.ROOT), None) or (
        volumes[0] if volumes else None
    )
