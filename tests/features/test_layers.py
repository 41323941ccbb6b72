import pytest

from steering_assets.features.layers import LayerSpecError, parse_layers


@pytest.mark.parametrize(
    "spec, expected",
    [("0-5", [0, 1, 2, 3, 4, 5]), ("2,5,10", [2, 5, 10]), ("0-2,10,15-17", [0, 1, 2, 10, 15, 16, 17]),
     (" 3 , 1-2 ", [1, 2, 3]), ("4,4,3-4", [3, 4]), (7, [7]), ([3, 1], [1, 3])],
)
def test_layer_specs(spec, expected):
    assert parse_layers(spec) == expected


@pytest.mark.parametrize(
    "spec, message",
    [
        ("5-2", r"range '5-2' is reversed; write '2-5'"),
        ("", r"layer spec is empty"),
        ("   ", r"layer spec is empty"),
        ("a-3", r"part 'a-3' is not a layer number"),
        ("1,,2", r"part '' is not a layer number"),
        ("-1", r"part '-1' is not a layer number"),
        ("2.5", r"part '2.5' is not a layer number"),
    ],
)
def test_bad_layer_specs_say_what_is_wrong(spec, message):
    with pytest.raises(LayerSpecError, match=message):
        parse_layers(spec)


def test_layers_beyond_the_model_are_refused():
    assert parse_layers("0-3", n_layers=4) == [0, 1, 2, 3]
    with pytest.raises(LayerSpecError, match=r"layer\(s\) \[4, 5\] out of range; the model has 4 layers \(0-3\)"):
        parse_layers("2-5", n_layers=4)
