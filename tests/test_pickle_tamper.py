"""A tampered pickle of a Program or CompiledFunction is a GraphcError naming the bad field (issue 23, item 7)."""

import pickle

import pytest

import graphc
from graphc.api import _load_function
from graphc.errors import GraphcError
from graphc.program import _load_program


class _Payload:
    """Pickles as a call of `loader(*args)`: a pickle whose state someone changed."""

    def __init__(self, loader, *args):
        self.loader, self.args = loader, args

    def __reduce__(self):
        return (self.loader, self.args)


def _state():
    prog = graphc.Program("x*y")
    loader, (text, options) = prog.__reduce__()
    assert loader is _load_program
    return text, options


def _load(loader, *args):
    return pickle.loads(pickle.dumps(_Payload(loader, *args)))


@pytest.mark.parametrize("change,match", [
    ({"bogus": 1}, r"unknown option 'bogus'"),
    ({"wrt": 3}, r"bad option 'wrt'.*got 3"),
    ({"wrt": [3]}, r"bad option 'wrt'"),
    ({"passes": 5}, r"bad option 'passes'"),
    ({"dtype": None}, r"bad option 'dtype'.*got None"),
    ({"order": "1"}, r"bad option 'order'"),
    ({"order": True}, r"bad option 'order'"),
    ({"unsafe": "yes"}, r"bad option 'unsafe'"),
    ({"grad": None}, r"bad option 'grad'"),
    ({"shapes": [1]}, r"bad option 'shapes'"),
    ({"shapes": {"x": 5}}, r"bad option 'shapes'"),
])
def test_tampered_program_options_name_the_field(change, match):
    text, options = _state()
    with pytest.raises(GraphcError, match=match):
        _load(_load_program, text, {**options, **change})


@pytest.mark.parametrize("text,options,match", [
    (None, {}, "holds IR text, got NoneType"),
    (5, {}, "holds IR text, got int"),
    ("", [1], "holds an options dict, got list"),
])
def test_tampered_program_payload_shape(text, options, match):
    if text == "":
        text = _state()[0]
    with pytest.raises(GraphcError, match=match):
        _load(_load_program, text, options)


@pytest.mark.parametrize("program,target,match", [
    ("prog", None, "bad target.*got NoneType"),
    ("prog", 3, "bad target.*got int"),
    ("prog", "bogus", "unknown target 'bogus'"),
    ("x*y", "numpy", "holds a Program, got str"),
    (None, "numpy", "holds a Program, got NoneType"),
])
def test_tampered_compiled_function(program, target, match):
    if program == "prog":
        program = graphc.Program("x*y")
    with pytest.raises(GraphcError, match=match):
        _load(_load_function, program, target)


def test_tampered_bytes_and_clean_round_trip():
    prog = graphc.Program("x*y")
    blob = pickle.dumps(prog)
    assert b"float64" in blob
    with pytest.raises(GraphcError, match="float16"):
        pickle.loads(blob.replace(b"float64", b"float16"))  # same length: still a valid pickle
    again = pickle.loads(blob)
    assert again.ir == prog.ir
    fn = graphc.compile("x*y", target="numpy")
    value, grads = pickle.loads(pickle.dumps(fn))(3.0, 4.0)
    assert value == 12.0 and grads == {"x": 4.0, "y": 3.0}
