"""The live webcam as a Streamlit component (assets/webcam/index.html): a preview, a record button per
class, and frames sent one at a time for live prediction (the next once the server has handled the last)."""
from __future__ import annotations

import base64
from pathlib import Path

import streamlit as st
import streamlit.components.v1 as components

_camera = components.declare_component("webcam", path=str(Path(__file__).resolve().parents[1] / "assets" / "webcam"))


def camera(classes: list[str], *, count: int, predict: bool, ack: int, key: str) -> None:
    """Draw the camera. `ack`: the last message the server has handled (read it with `sent` first, so
    the browser learns in this same run that it may send the next frame)."""
    _camera(classes=classes, count=count, predict=predict, ack=ack, every_ms=400, key=key, default=None)


def sent(key: str) -> dict | None:
    """What the browser last sent through the camera `key`, decoded: {"kind": "shots", "label",
    "frames": [jpeg bytes], "seq"}, {"kind": "frame", "frame": jpeg bytes, "seq"}, {"kind": "error",
    "error", "seq"}, or None before it has sent anything."""
    value = st.session_state.get(key)
    if not isinstance(value, dict) or not isinstance(value.get("seq"), int):
        return None
    try:
        if value.get("kind") == "shots":
            return {**value, "frames": [base64.b64decode(f, validate=True) for f in value.get("frames", [])]}
        if value.get("kind") == "frame":
            return {**value, "frame": base64.b64decode(value.get("frame", ""), validate=True)}
    except (ValueError, TypeError):
        return {"kind": "error", "error": "a frame that is not an image", "seq": value["seq"]}
    return value
