"""The permission bits of everything the daemon creates on disk, whatever its umask:
directories DIR_MODE (0750), files FILE_MODE (0640). Owner (the broker's user) reads
and writes, its group reads (operators who run dump-log), others get nothing: the fds
the broker hands out are the way to the data (DESIGN.md, "Trust boundaries"), and no
group or other write bit lets a client reopen a segment it was given for writing.

Every file and directory the daemon creates in a log dir (partition dirs, segments,
indexes, checkpoints and their temp files, cluster-metadata.json, cleaner files, locks)
and the control socket's directory is made here. Renames keep the mode.
"""
import os

__all__ = ["DIR_MODE", "FILE_MODE", "open_file", "make_dir", "make_dirs"]

DIR_MODE = 0o750
FILE_MODE = 0o640


def open_file(path, flags):
    """os.open(path, flags). With O_CREAT the file ends up FILE_MODE: created so (the
    umask can only take bits away, so it is never wider meanwhile), then set exactly,
    which also narrows a file an older odradek made wider. The caller closes the fd."""
    fd = os.open(path, flags, FILE_MODE)
    if flags & os.O_CREAT:
        try:
            if os.fstat(fd).st_mode & 0o7777 != FILE_MODE:
                os.fchmod(fd, FILE_MODE)
        except BaseException:
            os.close(fd)
            raise
    return fd


def make_dir(path):
    """mkdir(path) with DIR_MODE, whatever the umask (FileExistsError if it exists)."""
    os.mkdir(path, DIR_MODE)
    os.chmod(path, DIR_MODE)


def make_dirs(path):
    """path and any missing parents, each created with DIR_MODE; existing ones are left
    as they are (an operator's log dir keeps the mode it was given)."""
    path = os.path.abspath(path)
    if os.path.isdir(path):
        return
    make_dirs(os.path.dirname(path))
    try:
        make_dir(path)
    except FileExistsError:
        if not os.path.isdir(path):
            raise
