"""Offset checkpoint files, written atomically, in Apache Kafka's text format.

    0                      <- format version
    2                      <- number of entries
    orders 0 1234          <- topic partition offset
    orders 1 998

Writing: temp file, fsync it, rename over the old one, fsync the directory. A reader
therefore sees the old file or the new one, never a mixture, even across power loss.
A file that does not parse raises StorageError naming the file and the line.
"""
import fcntl
import os

from odradek.client.errors import StorageError
from odradek.daemon.storage import filenames
from odradek.daemon.storage.filenames import tmp_file
from odradek.daemon.storage.modes import open_file

__all__ = ["read_offsets", "write_offsets", "write_atomically", "fsync_dir", "update_locked",
           "LogDirCheckpoints", "CleanerCheckpoint", "encode_entries", "decode_entries"]

VERSION = 0


def fsync_dir(path):
    """fsync a directory, so a new or renamed entry in it survives power loss."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path, data, durable=True):
    """Replace `path` with `data` (bytes) so that a crash leaves the old or the new file.
    A failed write (ENOSPC, EIO) raises StorageError naming the file, removes the temp
    file and leaves the old file as it was. durable=False skips both fsyncs: the rename
    still survives a process crash (the page cache keeps it), not a power loss."""
    tmp = tmp_file(path)
    try:
        fd = open_file(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise StorageError(f"cannot write {path}: {e.strerror or e}; the previous version is kept") from e
    if not durable:
        return
    try:
        fsync_dir(os.path.dirname(os.path.abspath(path)))
    except OSError as e:
        raise StorageError(f"wrote {path}, but the directory's fsync failed: {e.strerror or e}") from e


def encode_entries(entries):
    """Kafka's checkpoint text: the version line, the count line, one line per entry
    (each entry a sequence of values joined by spaces)."""
    lines = [str(VERSION), str(len(entries))] + [" ".join(map(str, e)) for e in entries]
    return ("\n".join(lines) + "\n").encode()


def decode_entries(data, bad):
    """[(line number, line)] of the entries of checkpoint text `data`, after checking
    its version and count lines; `bad(line number, why)` makes the error raised."""
    lines = data.decode("utf-8", "replace").splitlines()
    if len(lines) < 2:
        raise bad(len(lines) + 1, "expected a version line and a count line")
    if lines[0].strip() != str(VERSION):
        raise bad(1, f"expected version {VERSION}, found {lines[0]!r}")
    try:
        count = int(lines[1])
    except ValueError:
        raise bad(2, f"expected an entry count, found {lines[1]!r}") from None
    if count != len(lines) - 2:
        raise bad(2, f"count says {count} entries, file has {len(lines) - 2}")
    return list(enumerate(lines[2:], start=3))


def write_offsets(path, offsets):
    """Write {(topic, partition): offset} to the checkpoint file at `path`."""
    write_atomically(path, encode_entries([(t, p, o) for (t, p), o in sorted(offsets.items())]))


def read_offsets(path):
    """{(topic, partition): offset} from the checkpoint at `path`; {} if there is none."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return {}

    def bad(lineno, why):
        return StorageError(f"checkpoint {path} line {lineno}: {why}")

    offsets = {}
    for lineno, line in decode_entries(data, bad):
        parts = line.split()
        if len(parts) != 3:
            raise bad(lineno, f"expected 'topic partition offset', found {line!r}")
        try:
            offsets[(parts[0], int(parts[1]))] = int(parts[2])
        except ValueError:
            raise bad(lineno, f"expected integers, found {line!r}") from None
    return offsets


def update_locked(lock_path, paths, change):
    """The read-modify-write of checkpoint files shared by the worker processes of a
    log dir, the one place it is written: under an exclusive flock on `lock_path`
    (.checkpoint.lock, a file that is never replaced, unlike the checkpoints), each
    file at `paths` is read, given to change(path, offsets), and written back when
    that returns true. Safe across processes and threads."""
    fd = open_file(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        for path in paths:
            offsets = read_offsets(path)
            if change(path, offsets):
                write_offsets(path, offsets)
    finally:
        os.close(fd)  # releases the flock


class LogDirCheckpoints:
    """The per-log-dir checkpoint files, shared by every partition in the dir:
    recovery-point-offset-checkpoint and log-start-offset-checkpoint. Each update is
    update_locked's read-modify-write; each call opens and closes what it needs."""

    def __init__(self, log_dir):
        self.log_dir = log_dir
        self.recovery_path = os.path.join(log_dir, filenames.RECOVERY_POINT_CHECKPOINT)
        self.log_start_path = os.path.join(log_dir, filenames.LOG_START_CHECKPOINT)
        self._lock_path = os.path.join(log_dir, filenames.CHECKPOINT_LOCK)

    def read(self, tp):
        """(recovery point, log start offset) of partition tp=(topic, partition); 0 if unknown."""
        return read_offsets(self.recovery_path).get(tp, 0), read_offsets(self.log_start_path).get(tp, 0)

    def update(self, tp, recovery_point=None, log_start_offset=None):
        """Record new offsets for tp (None: leave that file alone)."""
        values = {self.recovery_path: recovery_point, self.log_start_path: log_start_offset}
        update_locked(self._lock_path, [p for p, v in values.items() if v is not None],
                      lambda path, offsets: _set(offsets, tp, values[path]))

    def remove(self, tp):
        """Forget tp (its partition was deleted)."""
        update_locked(self._lock_path, (self.recovery_path, self.log_start_path),
                      lambda path, offsets: offsets.pop(tp, None) is not None)


class CleanerCheckpoint:
    """cleaner-offset-checkpoint of one log dir: per partition, the first offset the
    cleaner has not cleaned (Kafka's LogCleanerManager). Updated as the other
    checkpoints (update_locked), since the worker processes of a log dir share it."""

    def __init__(self, log_dir):
        self.path = os.path.join(log_dir, filenames.CLEANER_CHECKPOINT)
        self._lock_path = os.path.join(log_dir, filenames.CHECKPOINT_LOCK)

    def _update(self, change):
        update_locked(self._lock_path, (self.path,), lambda path, offsets: change(offsets))

    def read(self, tp):
        """The checkpointed first dirty offset of tp=(topic, partition), or None."""
        return read_offsets(self.path).get(tp)

    def update(self, tp, offset):
        self._update(lambda offsets: _set(offsets, tp, offset))

    def truncate(self, tp, offset):
        """The log was cut at `offset`: a checkpoint past it comes down to it."""
        if os.path.exists(self.path):
            self._update(lambda offsets: offsets.get(tp, 0) > offset and _set(offsets, tp, offset))

    def remove(self, tp):
        """Forget tp (its partition was deleted)."""
        if os.path.exists(self.path):
            self._update(lambda offsets: offsets.pop(tp, None) is not None)


def _set(offsets, tp, value):
    """offsets[tp] = value; whether that changed anything."""
    if offsets.get(tp) == value:
        return False
    offsets[tp] = value
    return True
