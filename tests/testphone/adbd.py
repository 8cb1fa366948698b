"""The device side of the ADB wire protocol, enough for the real adb server to drive a phone.

The real adb server connects to it like to any network phone (``adb connect 127.0.0.1:PORT``)
and speaks the transport protocol (AOSP ``protocol.txt``): 24-byte message headers
(command, arg0, arg1, length, checksum, magic) followed by the payload. Streams are opened by
the host with OPEN(service), acknowledged with OKAY, carry data with WRTE (one OKAY per WRTE:
flow control) and end with CLSE. Services (shell, exec, sync) are supplied by the caller.

States for tests: ``device`` answers CNXN; ``unauthorized`` answers with AUTH tokens it never
accepts (adb lists the phone as unauthorized); ``offline`` accepts TCP but never answers
(adb lists it as offline).
"""

from __future__ import annotations

import contextlib
import os
import queue
import socket
import struct
import threading
from collections.abc import Callable

A_SYNC, A_CNXN, A_OPEN, A_OKAY = 0x434E5953, 0x4E584E43, 0x4E45504F, 0x59414B4F
A_CLSE, A_WRTE, A_AUTH, A_STLS = 0x45534C43, 0x45545257, 0x48545541, 0x534C5453
VERSION = 0x01000001
MAX_PAYLOAD = 256 * 1024
HEADER = struct.Struct("<6I")
AUTH_TOKEN = 1


class StreamClosed(Exception):
    """The host closed the stream (or the connection is gone)."""


class Stream:
    """One OPENed service: ``read`` what the host sends, ``write`` back, ``close``."""

    def __init__(self, conn: Connection, local_id: int, remote_id: int, service: str):
        self.conn, self.local_id, self.remote_id, self.service = conn, local_id, remote_id, service
        self.inbox: queue.Queue[bytes | None] = queue.Queue()
        self.okay = threading.Semaphore(0)
        self.closed = threading.Event()
        self._buf = b""

    # host -> device
    def read(self, n: int | None = None, timeout: float | None = None) -> bytes:
        """Up to n bytes (at least one) of what the host sent; b"" once closed."""
        if not self._buf:
            try:
                item = self.inbox.get(timeout=timeout)
            except queue.Empty:
                return b""
            if item is None:
                self.inbox.put(None)
                return b""
            self._buf = item
        n = len(self._buf) if n is None else n
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def read_exact(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = self.read(n - len(out))
            if not chunk:
                raise StreamClosed(f"{self.service}: closed after {len(out)} of {n} bytes")
            out += chunk
        return out

    # device -> host
    def write(self, data: bytes) -> None:
        for i in range(0, len(data), self.conn.max_payload):
            if self.closed.is_set():
                raise StreamClosed(self.service)
            self.conn.send(A_WRTE, self.local_id, self.remote_id, data[i:i + self.conn.max_payload])
            while not self.okay.acquire(timeout=0.2):  # wait for the host's OKAY (flow control)
                if self.closed.is_set():
                    raise StreamClosed(self.service)

    def close(self) -> None:
        if not self.closed.is_set():
            self.closed.set()
            self.conn.send(A_CLSE, self.local_id, self.remote_id, b"")


class Connection:
    def __init__(self, sock: socket.socket, phone):
        self.sock, self.phone = sock, phone
        self.lock = threading.Lock()
        self.streams: dict[int, Stream] = {}
        self.next_id = 1
        self.max_payload = 4096
        self.alive = True

    def send(self, cmd: int, arg0: int, arg1: int, data: bytes) -> None:
        header = HEADER.pack(cmd, arg0, arg1, len(data), sum(data) & 0xFFFFFFFF,
                             cmd ^ 0xFFFFFFFF)
        with self.lock:
            try:
                self.sock.sendall(header + data)
            except OSError as e:
                self.alive = False
                raise StreamClosed("connection lost") from e

    def _recv_exact(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise ConnectionError("host closed the connection")
            out += chunk
        return out

    def serve(self) -> None:
        try:
            while self.alive:
                cmd, arg0, arg1, length, _crc, magic = HEADER.unpack(self._recv_exact(24))
                data = self._recv_exact(length) if length else b""
                if magic != cmd ^ 0xFFFFFFFF:
                    raise ConnectionError("bad magic")
                self._dispatch(cmd, arg0, arg1, data)
        except (ConnectionError, OSError, StreamClosed):
            pass
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        self.alive = False
        for s in list(self.streams.values()):
            s.closed.set()
            s.inbox.put(None)
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()

    def _dispatch(self, cmd: int, arg0: int, arg1: int, data: bytes) -> None:
        phone = self.phone
        if cmd == A_CNXN:
            self.max_payload = max(4096, min(arg1, MAX_PAYLOAD))
            if phone.state == "device":
                self.send(A_CNXN, VERSION, MAX_PAYLOAD, phone.banner().encode())
            elif phone.state == "unauthorized":
                self.send(A_AUTH, AUTH_TOKEN, 0, os.urandom(20))
            # "offline": never answer
        elif cmd == A_AUTH:
            if phone.state == "unauthorized" and arg0 == 2:  # a signature we never accept
                self.send(A_AUTH, AUTH_TOKEN, 0, os.urandom(20))
        elif cmd == A_OPEN:
            service = data.rstrip(b"\0").decode("utf-8", "replace")
            local_id, self.next_id = self.next_id, self.next_id + 1
            stream = Stream(self, local_id, arg0, service)
            handler = phone.service_handler(service)
            if handler is None:
                self.send(A_CLSE, 0, arg0, b"")
                return
            self.streams[local_id] = stream
            self.send(A_OKAY, local_id, arg0, b"")
            threading.Thread(target=self._run, args=(handler, stream), daemon=True).start()
        elif cmd == A_OKAY:
            s = self.streams.get(arg1)
            if s is not None:
                s.remote_id = arg0
                s.okay.release()
        elif cmd == A_WRTE:
            s = self.streams.get(arg1)
            if s is not None:
                s.inbox.put(data)
                self.send(A_OKAY, arg1, arg0, b"")
        elif cmd == A_CLSE:
            s = self.streams.pop(arg1, None)
            if s is not None:
                s.closed.set()
                s.inbox.put(None)

    def _run(self, handler: Callable[[Stream], None], stream: Stream) -> None:
        try:
            handler(stream)
        except StreamClosed:
            pass
        finally:
            with contextlib.suppress(StreamClosed):
                stream.close()
            self.streams.pop(stream.local_id, None)


class AdbdServer:
    """Listens on 127.0.0.1:port and serves each host connection on its own thread."""

    def __init__(self, phone, port: int = 0):
        self.phone = phone
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        self.connections: list[Connection] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            if self._stop.is_set():
                sock.close()
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = Connection(sock, self.phone)
            self.connections.append(conn)
            threading.Thread(target=conn.serve, daemon=True).start()

    def drop_connections(self) -> None:
        for c in list(self.connections):
            c.shutdown()
        self.connections.clear()

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # unblocks accept()
        with contextlib.suppress(OSError):
            self.listener.close()
        self.drop_connections()
