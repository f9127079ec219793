import pytest
import torch
from support.distill import collect, fresh_layers

from ttt_omni.data_manifest import books
from ttt_omni.resources import bundled


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def source():
    """A real trained Llama with its tokenizer: the bundled attention baseline (4 layers, hidden 128, GQA 4/2)."""
    return bundled("checkpoints", "tiny-baseline")


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """A small calibration corpus (tokenising all the train books takes a while): the openings of two train books."""
    folder = tmp_path_factory.mktemp("corpus")
    for book in books("train")[:2]:
        (folder / book.file).write_text(book.read()[:12_000], encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def store(source, corpus, tmp_path_factory):
    return collect(source, corpus, tmp_path_factory.mktemp("activations"))


@pytest.fixture
def converted_layers(source, tmp_path):
    return fresh_layers(source, tmp_path)
