"""The one spec registry (segshield._registry), its value grammar and its users."""

from __future__ import annotations

import inspect
import warnings

import pytest
import torch

from segshield._registry import Registry, signature_params, split
from segshield._spec import (
    annotation_types,
    format_value,
    parse_list,
    parse_typed,
    parse_value,
    sequence_item_types,
)
from segshield.attacks import FGSM, PGD, Defended, get_attack, list_attacks, register_attack
from segshield.attacks.registry import ATTACKS, REGISTRY
from segshield.defenses import get_defense, list_defenses
from segshield.defenses.registry import DEFENSES
from segshield.gradients import ADAPTIVE_GRADIENTS, GRADIENT_HELP, GRADIENTS


def _box(size: int = 1, scale: float = 0.5, flag: bool = False, tag: str | None = None):
    """A box for the tests."""
    return {"size": size, "scale": scale, "flag": flag, "tag": tag}


@pytest.fixture
def reg() -> Registry:
    r = Registry("widget", example="box:size=2", hint=" (see widgets)")
    r.register("box", _box, help={"size": "edge length"})
    return r


# ------------------------------------------------------------------ value grammar


@pytest.mark.parametrize(
    ("text", "kinds", "expected"),
    [
        ("60/2", (float,), 30.0),
        ("30", (float,), 30),
        ("1e-7", (float,), 1e-7),
        ("inf", (float,), float("inf")),
        ("1e3", (int,), 1000),
        ("60/2", (int,), 30),
        ("on", (bool,), True),
        ("0", (bool,), False),
        ("FALSE", (bool,), False),
        ("none", (float, type(None)), None),
        ("1/2/3", (str,), "1/2/3"),
        ("none", (str,), "none"),
        ("8/255", None, 8 / 255),
        ("l2", None, "l2"),
    ],
)
def test_parse_typed_reads_each_type(text, kinds, expected):
    value = parse_typed(text, kinds)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    ("text", "kinds", "message"),
    [
        ("high", (int,), "expected an integer"),
        ("2.5", (int,), "expected an integer"),
        ("none", (int,), "expected an integer"),
        ("wide", (float,), "expected a number"),
        ("1/0", (float,), "expected a number"),
        ("maybe", (bool,), "expected true or false"),
    ],
)
def test_parse_typed_says_what_was_expected(text, kinds, message):
    with pytest.raises(ValueError, match=message):
        parse_typed(text, kinds)


def test_annotation_types_read_without_eval():
    assert annotation_types("int | None") == (int, type(None))
    assert annotation_types(float | None) == (float, type(None))
    assert annotation_types("__import__('os').system('x')") is None
    assert annotation_types("list[int]") is None
    assert annotation_types(inspect.Parameter.empty) is None


@pytest.mark.parametrize("value", [True, False, None, 3, 30.0, 0.1, 8 / 255, 1e-7, "zero"])
def test_format_value_round_trips(value):
    kinds = (type(value),) if value is not None else (type(None),)
    assert parse_typed(format_value(value), kinds) == value
    assert parse_value(format_value(value)) == value


@pytest.mark.parametrize(
    ("annotation", "expected"),
    [
        ("tuple[int, ...]", ((int,), False)),
        ("tuple[int, ...] | None", ((int,), True)),
        ("Sequence[float]", ((float,), False)),
        ("list[str]", ((str,), False)),
        (tuple[int, ...], ((int,), False)),
        (tuple[float, ...] | None, ((float,), True)),
        ("tuple[int, int]", None),
        ("tuple[int]", None),
        ("list[None]", None),
        ("int", None),
        ("dict[str, int]", None),
        (tuple[int, int], None),
        (int | None, None),
        (inspect.Parameter.empty, None),
    ],
)
def test_sequence_item_types(annotation, expected):
    assert sequence_item_types(annotation) == expected


def test_parse_list_reads_dash_separated_items():
    assert parse_list("16-32-64-128", (int,)) == (16, 32, 64, 128)
    assert parse_list(" 8 ", (int,)) == (8,)
    assert parse_list("0.5-1/4", (float,)) == (0.5, 0.25)
    for bad in ("16--32", "16-", "-16", "16-x", "16-2.5"):
        with pytest.raises(ValueError, match="expected a dash-separated list of integers"):
            parse_list(bad, (int,))


@pytest.mark.parametrize("value", [(16, 32, 64), (0.5, 0.25), (True, False), (7,)])
def test_format_value_round_trips_lists(value):
    assert parse_list(format_value(value), (type(value[0]),)) == value


def _net(channels: tuple[int, ...] = (8, 16), strides: tuple[int, ...] | None = None):
    """A net with list settings."""
    return channels, strides


def test_registry_list_parameters():
    r = Registry("net")
    r.register("net", _net)
    params = r.entry("net").params
    assert params["channels"].type_name == "list[int]" and params["channels"].items == (int,)
    assert r.build("net:channels=4-8-16,strides=2-1") == ((4, 8, 16), (2, 1))
    assert r.build("net:strides=none") == ((8, 16), None)
    assert r.parse(r.spec("net", {"channels": (3, 5)})) == ("net", {"channels": (3, 5)})
    with pytest.raises(ValueError, match="net:channels: expected a dash-separated list"):
        r.build("net:channels=4-wide")
    assert r.describe()[0]["params"]["channels"]["type"] == "list[int]"


# ------------------------------------------------------------------ Registry


def test_registry_reads_parameters_from_signature(reg):
    params = reg.entry("box").params
    assert list(params) == ["size", "scale", "flag", "tag"]
    assert params["size"].type_name == "int" and params["size"].help == "edge length"
    assert params["tag"].kinds == (str, type(None)) and params["tag"].default is None
    assert reg.entry("box").summary == "A box for the tests."
    assert reg.describe()[0]["params"]["scale"] == {"type": "float", "default": 0.5, "help": ""}


def test_registry_builds_typed_values(reg):
    built = reg.build(" BOX : size=1e1, scale=60/2, flag=yes, tag=none")
    assert built == {"size": 10, "scale": 30.0, "flag": True, "tag": None}
    assert reg.build("box:size=2", flag=True)["flag"] is True
    assert reg.parse("box") == ("box", {})


def test_registry_spec_round_trip(reg):
    params = {"size": 3, "scale": 8 / 255, "flag": False, "tag": "a/b"}
    assert reg.parse(reg.spec("box", params)) == ("box", params)
    assert reg.spec("box") == "box"
    with pytest.raises(ValueError, match="cannot contain ','"):
        reg.spec("box", {"tag": "a,b"})


@pytest.mark.parametrize(
    ("spec", "exc", "match"),
    [
        ("crate", ValueError, r"unknown name 'crate'; valid names: box \(see widgets\)"),
        (
            "box:colour=red,hue=1",
            ValueError,
            "unknown parameter.s. colour, hue; valid parameters: size",
        ),
        ("box:size", ValueError, "expected key=value, got 'size'; example: box:size=2"),
        ("box:size=1,size=2", ValueError, "'size' given twice"),
        ("box:size=big", ValueError, "box:size: expected an integer, got 'big'"),
        (":size=1", ValueError, "expected 'NAME"),
        (42, TypeError, "expected a string"),
    ],
)
def test_registry_errors(reg, spec, exc, match):
    with pytest.raises(exc, match=match):
        reg.build(spec)


def test_registry_registration_errors(reg):
    with pytest.raises(ValueError, match="already registered"):
        reg.register("box", _box)
    for bad in ("Box", "a:b", "a b", ""):
        with pytest.raises(ValueError, match="name"):
            reg.register(bad, _box)
    with pytest.raises(ValueError, match="help: colour not parameters of _box"):
        reg.register("other", _box, help={"colour": "x"})
    with pytest.raises(ValueError, match="unknown parameter"):
        reg.build("box", colour=1)


def test_registry_serves_a_model_registry():
    """Names -> factories with caller-given arguments and the model messages."""
    from segshield.models.registry import MODELS

    models = Registry(
        "model", noun="setting", key_error=TypeError, skip=("in_channels", "num_classes")
    )
    models.register("unet", MODELS["unet"])
    assert list(models.entry("unet").params) == ["width", "depth"]
    net = models.build("unet:width=4,depth=2", 1, 2)
    assert net(torch.rand(1, 1, 8, 8)).shape == (1, 2, 8, 8)
    with pytest.raises(TypeError, match="unknown setting.*valid settings: width, depth"):
        models.build("unet:colour=1", 1, 2)


def test_model_registry_is_a_spec_registry():
    """segshield.models.registry.REGISTRY holds both tasks with the model settings."""
    from segshield.models.registry import CLASSIFIERS, MODELS
    from segshield.models.registry import REGISTRY as MODEL_REGISTRY

    assert MODEL_REGISTRY.names() == [*MODELS, *CLASSIFIERS]
    assert (MODEL_REGISTRY.kind, MODEL_REGISTRY.noun) == ("model", "setting")
    assert MODEL_REGISTRY.skip == ("in_channels", "num_classes")
    assert list(MODEL_REGISTRY.entry("cnn").params) == ["width", "depth"]
    assert MODEL_REGISTRY.entry("monai-unet").params["channels"].items == (int,)
    with pytest.raises(TypeError, match="valid settings: width"):
        MODEL_REGISTRY.parse("small:depth=2")
    with pytest.raises(TypeError):
        MODELS["x"] = MODELS["unet"]  # type: ignore[index]


def test_factories_view_is_live_and_read_only(reg):
    view = reg.factories
    reg.register("box2", _box)
    assert list(view) == ["box", "box2"] and len(reg) == 2 and "box2" in reg
    with pytest.raises(TypeError):
        view["x"] = _box  # type: ignore[index]


def test_signature_params_skips_self_and_varargs():
    class A:
        def __init__(self, a: int, *args, b: float = 1.0, **kw) -> None: ...

    params = signature_params(A)
    assert list(params) == ["a", "b"] and params["a"].required


def test_split_keeps_any_name():
    assert split("Shift:dx=3", "target") == ("shift", [("dx", "3")])


# ------------------------------------------------------------------ defences


def test_fr_fraction_value():
    """``fr:pd=60/2`` was refused by the old defence parser; it is 30 now."""
    fr = get_defense("fr:pd=60/2,ac=10/2")
    assert fr.table[0, 0] == 30 and fr.table[2, 2] == 5
    assert fr.spec() == get_defense("fr:pd=30,ac=5").spec()


def test_defense_registry_round_trips_every_default():
    for d in list_defenses():
        built = get_defense(d["name"])
        name, params = DEFENSES.parse(built.spec())
        assert name == d["name"] and DEFENSES.spec(name, params) == built.spec()


def test_defense_registry_type_errors():
    with pytest.raises(ValueError, match="fr:pd: expected a number, got 'x'"):
        get_defense("fr:pd=x")
    assert get_defense("fr:quality=none").quality is None


# ------------------------------------------------------------------ attacks


def test_attack_registry_types_values():
    assert get_attack("pgd:steps=1e1").steps == 10
    with pytest.raises(ValueError, match="pgd:steps: expected an integer, got '2.5'"):
        get_attack("pgd:steps=2.5")
    with pytest.raises(ValueError, match="given twice"):
        get_attack("pgd:steps=1,steps=2")


def test_register_attack_and_views():
    assert ATTACKS is not None and list(ATTACKS) == REGISTRY.names()

    def tiny(eps: float = 0.1) -> FGSM:
        return FGSM(eps=eps)

    register_attack("tiny_fgsm_test", tiny)
    try:
        assert list_attacks()["tiny_fgsm_test"] == ["eps"]
        assert "tiny_fgsm_test" in ATTACKS
        assert get_attack("tiny_fgsm_test:eps=1/10").eps == pytest.approx(0.1)
        with pytest.raises(ValueError, match="already registered"):
            register_attack("tiny_fgsm_test", tiny)
    finally:
        del REGISTRY._entries["tiny_fgsm_test"], REGISTRY._factories["tiny_fgsm_test"]


def test_attack_config_follows_the_constructor():
    assert FGSM(eps=0.1).config() == {"eps": 0.1, "norm": "linf"}
    assert list(PGD().config()) == list(inspect.signature(PGD).parameters)
    assert PGD(eps=0.1, steps=4).config()["alpha"] == pytest.approx(2.5 * 0.1 / 4)


def test_fgsm_is_one_pgd_step():
    model = torch.nn.Conv2d(3, 2, 1)
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.zeros(2, 8, 8, dtype=torch.long)
    for norm in ("linf", "l2"):
        a = FGSM(eps=0.05, norm=norm)(model, x, y)
        b = PGD(eps=0.05, alpha=0.05, steps=1, norm=norm, random_start=False)(model, x, y)
        torch.testing.assert_close(a.adversarial, b.adversarial, rtol=0, atol=0)
        assert a.attack == "fgsm" and a.stats["steps"].tolist() == [1, 1]


# ------------------------------------------------------------------ gradients


def test_gradient_policies_declared_once():
    assert GRADIENTS == ("exact", "bpda", "smooth")
    assert set(GRADIENT_HELP) == set(GRADIENTS)
    assert ADAPTIVE_GRADIENTS == ("bpda", "smooth")
    for d in list_defenses():
        assert set(d["gradients"]) <= set(GRADIENTS), d["name"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from segshield.attacks import adaptive

        assert adaptive.GRADIENT_POLICIES is GRADIENTS
    assert caught and caught[0].category is DeprecationWarning


def test_defended_refuses_unknown_policy():
    class Odd(torch.nn.Module):
        gradient, randomized = "magic", False

    with pytest.raises(ValueError, match="'exact', 'bpda', 'smooth'"):
        Defended(torch.nn.Identity(), Odd())
