"""Suite-wide settings.

One torch thread per process. ``pytest -n 2`` runs two workers on a two-core
machine; with torch's default of one intra-op thread per core every worker
would start two, four threads would fight over two cores, and the many tiny
operations of a time-stepping loop would each pay for the contention (the suite
ran about 4× slower). Setting the environment here also reaches the
subprocesses that tests start (the CLI, torchrun), which inherit it.
"""

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)
try:
    torch.set_num_interop_threads(1)
except RuntimeError:  # already set, or parallel work already started in this process
    pass


@pytest.fixture
def one_thread():
    """Kept for tests that state the need explicitly; the whole suite already runs on one thread."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# Modules whose tests start processes or run small studies (tens of seconds each). Under ``-n 2`` the
# workers take tests in collection order, so starting these first keeps one long test from running
# alone at the end while the other worker idles.
_LONG_FIRST = ("test_readme.py", "test_cli_interrupt.py", "test_hvae_ddp.py", "test_bench.py", "test_multires.py",
               "test_hvae_train.py", "test_orders.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(_LONG_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(_LONG_FIRST)))
