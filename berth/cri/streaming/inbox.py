"""What a client sent on one stream (SPDY) or channel (websocket) and nobody read yet.

Its reader takes it at its own pace; past HIGH bytes waiting, `room` clears and the connection
stops reading frames until the reader catches up, so a client that sends faster than a
container reads its stdin is slowed by TCP (as kubelet's spdystream, whose frame queue blocks
its connection's reader), instead of filling berthd's memory."""

from __future__ import annotations

import asyncio

HIGH = 1 << 20


class Inbox:
    def __init__(self) -> None:
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.waiting = 0  # bytes
        self.room = asyncio.Event()
        self.room.set()

    def put(self, data: bytes) -> None:
        self._queue.put_nowait(data)
        self.waiting += len(data)
        if self.waiting > HIGH:
            self.room.clear()

    def put_eof(self) -> None:
        """The end (b"" from get(), for ever); nothing is held back any more."""
        self._queue.put_nowait(b"")
        self.room.set()

    async def get(self) -> bytes:
        data = await self._queue.get()
        if not data:
            self._queue.put_nowait(b"")  # stays at the end
            return b""
        self.waiting -= len(data)
        if self.waiting <= HIGH:
            self.room.set()
        return data
