"""The V8 ``callFrame`` shared by ``.cpuprofile`` and ``.heapprofile``, both ways.

``{functionName, scriptId, url, lineNumber, columnNumber}`` with 0-based lines
and columns (-1: unknown). ``scriptId`` is ``"0"`` for a frame without a file
and numbers each file from 1 in order of first use, so no file shares the
"no file" id.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Tuple

from otel_profiling.formats.calltree import Frame

NO_SCRIPT = "0"


class CallFrames:
    """One ``callFrame`` JSON text per distinct frame of one document."""

    def __init__(self) -> None:
        self._dumps = json.JSONEncoder(ensure_ascii=False).encode
        self._scripts: Dict[str, str] = {}
        self._frames: Dict[Frame, str] = {}

    def script_id(self, filename: str) -> str:
        if not filename:
            return NO_SCRIPT
        found = self._scripts.get(filename)
        if found is None:
            found = self._scripts[filename] = str(len(self._scripts) + 1)
        return found

    def __call__(self, frame: Frame) -> str:
        found = self._frames.get(frame)
        if found is None:
            line, column = (frame.lineno - 1, 0) if frame.lineno > 0 else (-1, -1)
            found = self._frames[frame] = (
                f'{{"functionName":{self._dumps(frame.function)},'
                f'"scriptId":"{self.script_id(frame.filename)}",'
                f'"url":{self._dumps(frame.filename)},"lineNumber":{line},"columnNumber":{column}}}'
            )
        return found


class FrameReader:
    """One ``Frame`` per distinct ``callFrame`` of an input, so big inputs share them."""

    def __init__(self) -> None:
        self._cache: Dict[Tuple[str, str, int], Frame] = {}

    def __call__(self, call_frame: Dict[str, Any]) -> Frame:
        key = (
            call_frame.get("functionName", ""),
            call_frame.get("url", ""),
            call_frame.get("lineNumber", -1),
        )
        frame = self._cache.get(key)
        if frame is None:
            name, url, line0 = key
            frame = self._cache[key] = Frame(
                name or "(anonymous)", url or "", line0 + 1 if line0 >= 0 else 0
            )
        return frame
