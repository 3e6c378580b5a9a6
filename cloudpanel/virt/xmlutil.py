"""Small helpers over ElementTree for reading libvirt XML (building lives with each builder)."""

from __future__ import annotations

import xml.etree.ElementTree as ET


def parse(xml: str) -> ET.Element:
    return ET.fromstring(xml)


def text(root: ET.Element, path: str, default: str = "") -> str:
    node = root.find(path)
    return node.text.strip() if node is not None and node.text else default


def attr(root: ET.Element, path: str, name: str, default: str = "") -> str:
    node = root.find(path)
    return node.get(name, default) if node is not None else default


def to_string(root: ET.Element) -> str:
    return ET.tostring(root, encoding="unicode")
