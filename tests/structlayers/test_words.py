"""Word-valued layer options (``init``, ``backend``, ``cascade``, shuffles, ...): each layer declares
its words once, in the option's annotation (:class:`structlayers.configs.Words`); a spec, ``create``
and the constructor check against that one vocabulary, with one message."""

import warnings
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import structlayers
from structlayers import registry
from structlayers.cli import main
from structlayers.configs import ConfigError, Words, coerce, vocabulary


def _words(hint: object) -> Words | None:
    """The vocabulary of an option's type (``Annotated[str, Words]``, or that or ``None``)."""
    return vocabulary(hint) or next(filter(None, map(vocabulary, getattr(hint, "__args__", ()))), None)


#: ``(layer, option, vocabulary)`` of every word-valued option of every registered layer.
WORD_OPTIONS = [(name, option, words) for name in registry.available()
                for option, hint in registry.option_types(name).items() if (words := _words(hint))]


def test_every_layer_with_a_word_option_declares_its_words() -> None:
    declared = {(name, option) for name, option, _ in WORD_OPTIONS}
    for name in ("acdc", "afdf", "butterfly", "circulant", "toeplitz", "monarch", "kronecker", "stack"):
        assert (name, "init") in declared, name
    assert {("acdc", "backend"), ("acdc", "inner_shuffle"), ("afdf", "cascade"), ("stack", "shuffle"),
            ("stack", "activation"), ("stack", "norm")} <= declared
    for name in registry.available():
        for option in registry.options(name):
            words = _words(registry.option_types(name)[option.name])
            assert words is None or option.default is None or option.default in words.accepted, (name, option)


@pytest.mark.parametrize("name, option, words", WORD_OPTIONS, ids=lambda v: v if isinstance(v, str) else "")
def test_each_accepted_word_parses_and_builds(name: str, option: str, words: Words) -> None:
    for word in words.accepted:
        spec = structlayers.LayerSpec.parse(f"{name}:{option}={word}")
        assert spec.options == {option: word}
        assert structlayers.LayerSpec.parse(str(spec)) == spec
        if option != "cascade" or word == "real" or name == "afdf":  # a complex cascade needs a linear stack
            assert spec.build(8, 8) is not None


def _misspelt(words: Words) -> st.SearchStrategy[str]:
    """Words near the accepted ones (one letter dropped, doubled or changed) and arbitrary text."""
    def variants(word: str, i: int, letter: str) -> list[str]:
        i %= len(word)
        return [word[:i] + word[i + 1:], word[:i] + word[i] + word[i:], word[:i] + letter + word[i + 1:]]

    near = st.builds(variants, st.sampled_from(words.accepted), st.integers(0, 20), st.sampled_from("aeiouxyz"))
    return st.one_of(near.flatmap(st.sampled_from), st.text(min_size=1, max_size=12)).filter(
        lambda w: w not in words.accepted and w not in words.aliases)


@pytest.mark.parametrize("name, option, words", WORD_OPTIONS, ids=lambda v: v if isinstance(v, str) else "")
@given(data=st.data())
def test_a_misspelt_word_is_refused_when_the_spec_is_made(name: str, option: str, words: Words,
                                                            data: st.DataObject) -> None:
    word = data.draw(_misspelt(words))
    message = f"{words.owner}: unknown {option} {word!r}; expected one of {words.accepted}"
    for make in (lambda: structlayers.LayerSpec(name, None, {option: word}),
                 lambda: registry.parse_options(name, {option: word}),
                 lambda: structlayers.create(name, 8, 8, **{option: word})):
        with pytest.raises(ConfigError) as refused:
            make()
        assert str(refused.value) == message
    with pytest.raises(ValueError) as built:  # the constructor, called directly, says the same
        registry.get(name)(8, 8, **{option: word})
    assert str(built.value) == message


def test_the_message_names_the_layer_that_takes_the_option() -> None:
    """A stack passes ``init`` on to its factors: the factor refuses it, as when it is built."""
    for text in ("acdc:depth=4:init=unifrom", "stack:factor=acdc:init=unifrom"):
        with pytest.raises(ValueError, match=r"^layer 'acdc': unknown init 'unifrom'; expected one of "
                                             r"\('normal', 'identity', 'uniform'\)$"):
            structlayers.LayerSpec.parse(text)
    with pytest.raises(ValueError, match="^layer 'stack': unknown activation 'sigmoid'"):
        structlayers.LayerSpec.parse("acdc:depth=2:activation=sigmoid")
    with pytest.raises(ValueError, match="factor 'dense' cannot be stacked"):
        structlayers.LayerSpec.parse("stack:factor=dense")
    assert structlayers.LayerSpec.parse("acdc:depth=2:norm=none").options == {"norm": None}


@pytest.mark.parametrize("name", ["monarch", "kronecker", "circulant", "toeplitz"])
def test_a_deprecated_alias_warns_once_and_is_stored_as_its_word(name: str) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        spec = structlayers.LayerSpec.parse(f"{name}:init=uniform")
        assert spec.options == {"init": "linear"} and str(spec) == f"{name}:init=linear"
        spec.build(8, 8)
    deprecations = [w for w in caught if issubclass(w.category, DeprecationWarning)]
    assert [str(w.message) for w in deprecations] == [
        f"layer {name!r}: init='uniform' is deprecated and will be removed in the next release; use init='linear'"]


def test_words_outside_layers() -> None:
    """The same rule for any text option: ``coerce`` reads an ``Annotated[str, Words]`` hint."""
    from typing import Annotated

    words = Words(("a", "b"), {"old": "a"})
    assert coerce("b", Annotated[str, words]) == "b"
    with pytest.warns(DeprecationWarning, match="use mode='a'"):
        assert coerce("old", Annotated[str, words.named("mode")]) == "a"
    with pytest.raises(ConfigError, match=r"^unknown mode 'c'; expected one of \('a', 'b'\)$"):
        coerce("c", Annotated[str, words.named("mode")] | None)
    assert coerce("none", Annotated[str, words] | None) is None
    with pytest.raises(ConfigError, match="expected a string"):
        coerce(3, Annotated[str, words])


@pytest.mark.parametrize("argv", [["--layer", "acdc", "--option", "init=unifrom"], ["--layer", "acdc:init=unifrom"]])
def test_the_approx_cli_refuses_a_misspelt_word_before_any_work(argv: list[str], tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "fits.json"
    assert main(["approx", "--n", "8", "--steps", "2", "--no-progress", "--json", str(out), *argv]) == 2
    err = capsys.readouterr().err
    assert "layer 'acdc': unknown init 'unifrom'; expected one of ('normal', 'identity', 'uniform')" in err
    assert "Traceback" not in err and not out.exists()


def test_the_layers_cli_lists_the_words_of_one_layer(capsys: pytest.CaptureFixture) -> None:
    assert main(["layers", "afdf"]) == 0
    out = capsys.readouterr().out
    assert "cascade='real'" in out
    assert "'normal' | 'identity' | 'uniform'" in out and "'real' | 'complex'" in out
