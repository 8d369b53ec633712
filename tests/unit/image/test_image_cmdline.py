import pytest

from colopp.errors import ConfigError
from colopp.image import READY_MARKER, kernel_cmdline
from colopp.image.builder import GUEST_SOURCES_DIR


def test_cmdline_with_gateway():
    assert kernel_cmdline("198.18.0.100/24", "198.18.0.1") == (
        "console=ttyS0 quiet panic=-1 tsc=reliable colopp.ip=198.18.0.100/24 colopp.gw=198.18.0.1"
    )


def test_cmdline_without_gateway_and_with_shell():
    line = kernel_cmdline("198.18.1.7/16", None, shell=True)
    assert line.split() == [
        "console=ttyS0",
        "quiet",
        "panic=-1",
        "tsc=reliable",
        "colopp.ip=198.18.1.7/16",
        "colopp.shell=1",
    ]


@pytest.mark.parametrize("bad", ["198.18.0.100", "not-an-ip/24", "2001:db8::1/64", "1.2.3.4/33"])
def test_cmdline_rejects_bad_address(bad):
    with pytest.raises(ConfigError):
        kernel_cmdline(bad)


def test_cmdline_rejects_gateway_outside_subnet():
    with pytest.raises(ConfigError, match="outside"):
        kernel_cmdline("198.18.0.100/24", "198.19.0.1")


def test_cmdline_rejects_bad_gateway():
    with pytest.raises(ConfigError):
        kernel_cmdline("198.18.0.100/24", "gw")


def test_ready_marker_matches_init_script():
    init = (GUEST_SOURCES_DIR / "init").read_text()
    assert f'echo "{READY_MARKER}" > /dev/console' in init


def test_cmdline_with_ipv6():
    line = kernel_cmdline("198.18.0.100/24", ip6_cidr="fd63:6f6c:6f70::100/64")
    assert "colopp.ip=198.18.0.100/24 colopp.ip6=fd63:6f6c:6f70::100/64" in line
    assert "colopp.ip6" not in kernel_cmdline("198.18.0.100/24")


@pytest.mark.parametrize("bad", ["fd63::100", "198.18.0.100/24", "fd63::zz/64", "x/64"])
def test_cmdline_rejects_bad_ipv6(bad):
    with pytest.raises(ConfigError):
        kernel_cmdline("198.18.0.100/24", ip6_cidr=bad)


def test_init_script_reads_ip6():
    init = (GUEST_SOURCES_DIR / "init").read_text()
    assert "colopp.ip6=*)" in init and 'ip -6 addr add "$ip6_cidr" dev eth0' in init
