import pytest


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory):
    """The tiny synthetic preset (3 scenes), generated once per test session."""
    from nre.data.synth import generate

    root = tmp_path_factory.mktemp("synth_tiny")
    generate(root, "tiny", seed=0)
    return root


@pytest.fixture
def one_torch_thread():
    """Run a test with one torch thread (network tests: stable timing, no oversubscription), then restore."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
