import pytest
import torch

from semcore.model import UNetConfig, UNetFlex, receptive_fields

PAPER = UNetConfig(channels=[64, 128, 256, 512], enc_convs=[2, 2, 2], mid_convs=3, dec_convs=[5, 6, 7])


@pytest.mark.parametrize("norm", ["layer", "batch", "none"])
@pytest.mark.parametrize("in_channels", [1, 3])
def test_output_shape_and_block_means(norm, in_channels):
    config = UNetConfig(in_channels=in_channels, channels=[4, 8, 16, 32], norm=norm, bias=norm == "none")
    model = UNetFlex(config)
    x_hat, means = model(torch.rand(5, in_channels, 24, 24), return_means=True)
    assert x_hat.shape == (5, in_channels, 24, 24)
    assert list(means) == config.block_names == ["E1", "E2", "E3", "M", "D3", "D2"]
    widths = {"E1": 4, "E2": 8, "E3": 16, "M": 32, "D3": 16, "D2": 8}
    for name, a in means.items():
        assert a.shape == (5, widths[name])
        assert (a >= 0).all()  # post-ReLU channel means


def test_block_means_are_spatial_means_of_the_block_output():
    model = UNetFlex(UNetConfig(channels=[4, 8, 16]))
    x = torch.rand(2, 3, 16, 16)
    _, means = model(x, return_means=True)
    middle_input = model.pool(model.encoder[1](model.pool(model.encoder[0](x))))
    assert torch.allclose(means["M"], model.middle(middle_input).mean(dim=(2, 3)))
    assert torch.allclose(means["M"], model.middle_means(x))


def test_paper_configuration_matches_the_authors_model():
    model = UNetFlex(PAPER)
    assert abs(sum(p.numel() for p in model.parameters()) - 13.7e6) < 0.05e6
    assert receptive_fields(PAPER)["M"] == 84


@pytest.mark.parametrize("config", [
    UNetConfig(channels=[4, 8, 16, 32], norm="none"),
    UNetConfig(channels=[4, 8, 16], enc_convs=[1, 3], mid_convs=2, dec_convs=[3, 1], norm="none"),
    UNetConfig(channels=[4, 8], enc_convs=[2], mid_convs=1, dec_convs=[2], kernel_size=5, norm="none"),
])
def test_receptive_field_matches_the_gradient_footprint(config):
    """The input pixels that move one unit: the analytic field, for the middle block and the output."""
    torch.manual_seed(0)  # with 4 channels an unlucky init can leave a border path dead under ReLU
    model = UNetFlex(config).double()
    fields = receptive_fields(config)
    size = 2 ** config.num_blocks * 32
    x = torch.rand(1, config.in_channels, size, size, dtype=torch.double, requires_grad=True)
    x_hat, _ = model(x, return_means=True)

    def footprint(unit: torch.Tensor) -> int:
        (grad,) = torch.autograd.grad(unit, x, retain_graph=True)
        rows = grad.abs().sum(dim=(0, 1, 3)).nonzero()
        return int(rows.max() - rows.min() + 1)

    middle = model.middle(_encode(model, x))
    centre = middle.shape[-1] // 2
    assert footprint(middle[0, :, centre, centre].sum()) == fields["M"]
    # Upsampling makes the footprint depend on a unit's alignment: the field is the widest over one period.
    centre = size // 2
    widest = max(footprint(x_hat[0, :, centre + j, centre + j].sum()) for j in range(2**config.num_blocks))
    assert widest == fields["output"]


def _encode(model, x):
    for block in model.encoder:
        x = model.pool(block(x))
    return x


def test_save_load_round_trip(tmp_path):
    config = UNetConfig(in_channels=1, channels=[4, 8, 16], norm="batch")
    model = UNetFlex(config)
    model.train()
    model(torch.rand(4, 1, 16, 16))  # moves the running std away from its initial ones
    model.eval()
    model.save_pretrained(tmp_path / "model.pt")
    saved = torch.load(tmp_path / "model.pt", weights_only=True)
    assert saved["config"]["channels"] == [4, 8, 16]
    loaded = UNetFlex.from_pretrained(tmp_path / "model.pt").eval()
    assert loaded.config == config
    x = torch.rand(3, 1, 16, 16)
    assert torch.equal(model(x), loaded(x))


@pytest.mark.parametrize("bad, key", [
    (dict(channels=[8]), "model.channels"),
    (dict(channels=[8, 16], enc_convs=[2, 2]), "model.enc_convs"),
    (dict(channels=[8, 16], enc_convs=[2], dec_convs=[1]), r"model.dec_convs\[0\]"),
    (dict(norm="group"), "model.norm"),
])
def test_bad_configs_name_their_key(bad, key):
    with pytest.raises(ValueError, match=key):
        UNetConfig(**bad)
