"""Pieces of the QEMU target that need no guest: the initramfs format and missing tools."""

from __future__ import annotations

import pytest
from zcfuzz.vm import kbuild, qemu
from zcfuzz.vm.errors import UserError, debian_package_of


def test_missing_qemu_is_one_line_saying_what_to_install(monkeypatch):
    monkeypatch.setattr(qemu.shutil, "which", lambda name: None)
    with pytest.raises(UserError, match="apt-get install qemu-system-x86"):
        qemu.qemu_binary()


@pytest.mark.parametrize("name, data", [("init", b"\x7fELF" + b"x" * 13), ("dev", b""), ("a/b", b"12345")])
def test_cpio_records_are_newc_and_four_byte_aligned(name, data):
    record = qemu.cpio_entry(name, 0o100755, data, ino=7)
    assert record.startswith(b"070701")
    assert len(record) % 4 == 0
    header = record[:110]
    assert int(header[6:14], 16) == 7  # inode
    assert int(header[54:62], 16) == len(data)  # file size
    assert int(header[94:102], 16) == len(name) + 1  # name size, with its NUL
    assert record[110:110 + len(name)] == name.encode()
    assert data in record


def test_initramfs_holds_the_executor_as_init(tmp_path):
    executor = tmp_path / "zcexec"
    executor.write_bytes(b"\x7fELF-executor")
    archive = qemu.build_initramfs(executor, tmp_path / "initramfs.cpio").read_bytes()
    assert b"init\0" in archive and b"\x7fELF-executor" in archive
    assert b"dev/console\0" in archive and archive.rstrip(b"\0").endswith(b"TRAILER!!!")


def test_missing_build_tools_name_just_their_packages(monkeypatch):
    monkeypatch.setattr(kbuild.shutil, "which", lambda name: None if name in ("gcc", "bison") else "/bin/" + name)
    with pytest.raises(UserError, match=r"^missing build tools \(gcc, bison\): run 'apt-get install build-essential bison'$"):
        kbuild.check_build_tools()


def test_everything_zcfuzz_checks_for_has_a_package_in_the_list_it_installs():
    needed = [qemu.QEMU, "busybox", "gcc", "make", str(kbuild.DEBIAN_SOURCE_TARBALL),
              *kbuild.BUILD_TOOLS, *kbuild.BUILD_HEADERS]
    provides = debian_package_of()
    assert [item for item in needed if item not in provides] == []
    assert provides[str(kbuild.DEBIAN_SOURCE_TARBALL)] == "linux-source-6.12"
