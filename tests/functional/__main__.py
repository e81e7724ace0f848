"""``python -m tests.functional``: run the shipped functional suites against Plexus."""

import sys

import pytest

from tests.functional.suites import MODULES

if __name__ == "__main__":
    sys.exit(pytest.main(["-p", "tests.functional.plugin", "-p", "no:cacheprovider", "-q",
                          "-W", "ignore", *sys.argv[1:], "--pyargs", *MODULES]))
