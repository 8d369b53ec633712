import pytest

from colopp.demo.services import parse_redis_csv, parse_wrk, redis_benchmark_argv, wrk_argv
from colopp.errors import ConfigError

WRK_CLEAN = """Running 1m test @ http://198.18.0.100:8080/64k.bin
  1 threads and 2 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.20ms    2.28ms  24.93ms   87.58%
    Req/Sec     1.05k   259.04     1.60k    70.00%
  2092 requests in 2.01s, 131.16MB read
Requests/sec:   1042.10
Transfer/sec:     65.33MB
"""

WRK_ERRORS = WRK_CLEAN.replace(
    "Requests/sec",
    "  Socket errors: connect 1, read 2, write 0, timeout 3\n"
    "  Non-2xx or 3xx responses: 4\nRequests/sec",
)


def test_wrk_report_without_errors() -> None:
    assert parse_wrk(WRK_CLEAN) == {"requests": 2092, "errors": 0}


def test_wrk_socket_errors_and_bad_statuses_count() -> None:
    assert parse_wrk(WRK_ERRORS) == {"requests": 2092, "errors": 10}


def test_wrk_without_a_report_is_an_error() -> None:
    with pytest.raises(ConfigError, match="no wrk summary"):
        parse_wrk("unable to connect to 198.18.0.100:8080 Connection refused\n")


def test_redis_csv_rows() -> None:
    text = (
        '"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms"\n'
        '"SET","1234.57","1.2","0.3","1.1"\n"GET","2000.00","0.9","0.2","0.8"\n'
    )
    assert parse_redis_csv(text) == {"SET": 1234.57, "GET": 2000.0}


def test_argv_are_lists_naming_the_guest() -> None:
    assert wrk_argv("198.18.0.100")[-1] == "http://198.18.0.100:8080/64k.bin"
    argv = redis_benchmark_argv("198.18.0.100")
    assert argv[argv.index("-h") + 1] == "198.18.0.100" and "--csv" in argv
