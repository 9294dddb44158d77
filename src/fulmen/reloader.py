"""File watching for --reload: which of the application's files changed.

The supervisor's master owns the watcher and waits on its fileno() in the
same select() as its signals and workers; nothing polls.  watch(paths) adds
.py files (and so the directories they live in), read() returns the watched
files that changed since the last call; read(any_py=True) also returns the
other .py files of those directories that changed (new code that failed to
start may import a module no worker has imported yet).

Two implementations with that interface:
  InotifyWatcher    inotify through ctypes on libc (Linux, no dependency)
  WatchfilesWatcher watchfiles (when it is installed), in a thread that
                    writes to a pipe
Directories are watched rather than files, because editors often save by
writing a new file and renaming it over the old one.
"""
import ctypes
import os
import struct
import threading

# from <sys/inotify.h>
IN_MODIFY = 0x00000002
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_Q_OVERFLOW = 0x00004000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC

# A file counts as changed when a write to it ends, or something is renamed
# onto it or away, or it is deleted.  IN_MODIFY alone would fire in the middle
# of a write.
_MASK = IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE
_EVENT = struct.Struct("iIII")      # wd, mask, cookie, len; then len bytes of name


class InotifyWatcher:
    kind = "inotify"

    def __init__(self):
        self._libc = ctypes.CDLL(None, use_errno=True)
        fd = self._libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, "inotify_init1: " + os.strerror(err))
        self._fd = fd
        self._dirs = {}         # wd -> directory
        self._wds = {}          # directory -> wd
        self.files = set()

    def fileno(self):
        return self._fd

    def watch(self, paths):
        for p in paths:
            p = os.path.realpath(p)
            self.files.add(p)
            d = os.path.dirname(p)
            if d in self._wds:
                continue
            wd = self._libc.inotify_add_watch(self._fd, os.fsencode(d), _MASK)
            if wd < 0:
                continue        # a directory that went away: nothing to watch
            self._dirs[wd] = d
            self._wds[d] = wd

    def read(self, any_py=False):
        """The watched files that changed (with any_py, every .py file of a
        watched directory); [] when the events were about others."""
        changed = set()
        while True:
            try:
                data = os.read(self._fd, 65536)
            except BlockingIOError:
                break
            if not data:
                break
            i = 0
            while i + _EVENT.size <= len(data):
                wd, mask, _cookie, n = _EVENT.unpack_from(data, i)
                name = data[i + _EVENT.size:i + _EVENT.size + n].split(b"\0", 1)[0]
                i += _EVENT.size + n
                if mask & IN_Q_OVERFLOW:
                    changed.update(self.files)     # events were lost: assume the worst
                    continue
                d = self._dirs.get(wd)
                if d is not None and name:
                    path = os.path.join(d, os.fsdecode(name))
                    if path in self.files or any_py and path.endswith(".py"):
                        changed.add(path)
        return sorted(changed)

    def close(self):
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class WatchfilesWatcher:
    """The same interface over watchfiles.watch(), which runs in a thread and
    writes the changed paths, one per line, to a pipe."""
    kind = "watchfiles"

    def __init__(self):
        import watchfiles
        self._watchfiles = watchfiles
        self._r, self._w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._dirs = set()
        self.files = set()
        self._stop = None
        self._buf = b""

    def fileno(self):
        return self._r

    def watch(self, paths):
        dirs = set(self._dirs)
        for p in paths:
            p = os.path.realpath(p)
            self.files.add(p)
            dirs.add(os.path.dirname(p))
        if dirs != self._dirs:
            self._dirs = dirs
            self._restart()

    def _restart(self):
        if self._stop is not None:
            self._stop.set()
        stop = self._stop = threading.Event()
        dirs = sorted(self._dirs)

        def run():
            for changes in self._watchfiles.watch(*dirs, stop_event=stop, recursive=False,
                                                 raise_interrupt=False):
                data = "".join(os.path.realpath(p) + "\n" for _, p in changes).encode()
                try:
                    os.write(self._w, data)
                except OSError:
                    return
        threading.Thread(target=run, daemon=True, name="fulmen-reloader").start()

    def read(self, any_py=False):
        try:
            while True:
                self._buf += os.read(self._r, 65536)
        except BlockingIOError:
            pass
        *lines, self._buf = self._buf.split(b"\n")
        return sorted({p for p in (os.fsdecode(l) for l in lines)
                       if p in self.files or any_py and p.endswith(".py")})

    def close(self):
        if self._stop is not None:
            self._stop.set()
        os.close(self._r)
        os.close(self._w)


def make_watcher():
    """watchfiles when it is importable, else inotify."""
    try:
        import watchfiles  # noqa: F401
    except ImportError:
        return InotifyWatcher()
    return WatchfilesWatcher()
