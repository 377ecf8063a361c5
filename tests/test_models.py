"""Model registry: shapes, parameter counts, init determinism, local pretrained weights."""

import re

import pytest
import torch
from safetensors.torch import save_file

from robustflow.models import (
    PretrainedWeightsNotFound,
    create_model,
    list_models,
    pretrained_weights_available,
)

torch.set_num_threads(1)

SMALL_CONFIGS = {
    "small_cnn": dict(features=(4, 8)),
    "vit_micro": dict(embed_dim=16, depth=1, num_heads=2),
    "resnet18": {},
    "resnet50": {},
    "vit_small_patch16_224": dict(patch_size=4),
    "vit_tiny_patch16_224": dict(patch_size=4),
}


def _x(n=2, seed=0, channels=3, size=32):
    return torch.randn(n, channels, size, size, generator=torch.Generator().manual_seed(seed))


def test_registry_lists_all_models_and_rejects_unknown():
    assert set(list_models()) == set(SMALL_CONFIGS)
    with pytest.raises(ValueError, match="registered models: resnet18, resnet50, small_cnn"):
        create_model("alexnet", num_classes=10)
    with pytest.raises(ValueError, match="unknown model"):
        pretrained_weights_available("alexnet")


@pytest.mark.parametrize("name", sorted(SMALL_CONFIGS))
def test_forward_gives_one_logit_per_class(name):
    model = create_model(name, num_classes=7, img_size=32, **SMALL_CONFIGS[name]).eval()
    with torch.no_grad():
        assert model(_x()).shape == (2, 7)


def test_small_cnn_parameter_count_by_hand():
    model = create_model("small_cnn", num_classes=10, in_chans=3, features=(4, 8))
    conv1, bn1 = 3 * 4 * 3 * 3, 2 * 4  # bias-free conv; BN weight + bias
    conv2, bn2 = 4 * 8 * 3 * 3, 2 * 8
    head = 8 * 10 + 10
    assert sum(p.numel() for p in model.parameters()) == conv1 + bn1 + conv2 + bn2 + head == 510


def test_small_cnn_seed000_configuration_shape():
    model = create_model("small_cnn", num_classes=10, features=(64, 128, 256), dropout=0.3)
    widths = [m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert widths == [64, 128, 256] and model.dropout.p == 0.3 and model.head.in_features == 256


def test_small_cnn_rejects_too_many_blocks_for_the_image():
    with pytest.raises(ValueError, match="img_size 8"):
        create_model("small_cnn", num_classes=10, img_size=8, features=(4, 4, 4, 4))


def test_one_channel_input():
    model = create_model("small_cnn", num_classes=3, in_chans=1, img_size=16, features=(4,)).eval()
    assert model(_x(channels=1, size=16)).shape == (2, 3)


def test_resnet_cifar_stem_keeps_resolution():
    plain = create_model("resnet18", num_classes=10).eval()
    cifar = create_model("resnet18", num_classes=10, cifar_stem=True).eval()
    assert cifar.conv1.kernel_size == (3, 3) and cifar.conv1.stride == (1, 1)
    assert isinstance(cifar.maxpool, torch.nn.Identity)
    with torch.no_grad():
        assert plain.forward_features(_x()).shape[-2:] == (1, 1)  # timm's ImageNet stem: /32
        assert cifar.forward_features(_x()).shape[-2:] == (4, 4)  # CIFAR stem: /8
        assert cifar(_x()).shape == (2, 10)
    with pytest.raises(ValueError, match="cifar_stem"):
        create_model("vit_tiny_patch16_224", num_classes=10, cifar_stem=True)


def test_vit_patch_grid_follows_img_size_and_patch_size():
    model = create_model("vit_tiny_patch16_224", num_classes=10, img_size=32, patch_size=4)
    assert model.patch_embed.grid_size == (8, 8)
    micro = create_model("vit_micro", num_classes=10, img_size=32)
    assert micro.patch_embed.grid_size == (8, 8) and micro.embed_dim == 64 and len(micro.blocks) == 4


@pytest.mark.parametrize("name", ["small_cnn", "vit_micro"])
def test_same_seed_gives_identical_init(name):
    def build(seed):
        torch.manual_seed(seed)
        return create_model(name, num_classes=10, **SMALL_CONFIGS[name]).state_dict()

    a, b, c = build(0), build(0), build(1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def _trained_like(model):
    """Move BN statistics off their init so a load that skipped them would show."""
    with torch.no_grad():
        model.train()(_x(8, seed=3))
    return model.eval()


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_small_cnn_pretrained_roundtrip(tmp_path, suffix):
    torch.manual_seed(0)
    source = _trained_like(create_model("small_cnn", num_classes=10, features=(4, 8)))
    path = tmp_path / f"weights{suffix}"
    if suffix == ".pt":
        torch.save(source.state_dict(), path)
    else:
        save_file(source.state_dict(), str(path))
    assert pretrained_weights_available("small_cnn", path)
    torch.manual_seed(1)
    loaded = create_model("small_cnn", num_classes=10, features=(4, 8), pretrained=True, pretrained_file=path).eval()
    with torch.no_grad():
        assert torch.equal(loaded(_x()), source(_x()))


def test_small_cnn_pretrained_other_class_count_keeps_body_reinits_head(tmp_path):
    torch.manual_seed(0)
    source = _trained_like(create_model("small_cnn", num_classes=10, features=(4, 8)))
    path = tmp_path / "weights.pt"
    torch.save(source.state_dict(), path)
    torch.manual_seed(1)
    fresh_head = create_model("small_cnn", num_classes=5, features=(4, 8)).head.weight.clone()
    torch.manual_seed(1)
    loaded = create_model("small_cnn", num_classes=5, features=(4, 8), pretrained=True, pretrained_file=path)
    body = {k: v for k, v in source.state_dict().items() if not k.startswith("head.")}
    loaded_state = loaded.state_dict()
    assert all(torch.equal(loaded_state[k], v) for k, v in body.items())
    assert loaded.head.weight.shape == (5, 8) and torch.equal(loaded.head.weight, fresh_head)


def test_vit_micro_pretrained_roundtrip(tmp_path):
    torch.manual_seed(0)
    source = create_model("vit_micro", num_classes=10, **SMALL_CONFIGS["vit_micro"]).eval()
    path = tmp_path / "vit.pt"
    torch.save(source.state_dict(), path)
    loaded = create_model(
        "vit_micro", num_classes=10, pretrained=True, pretrained_file=path, **SMALL_CONFIGS["vit_micro"]
    ).eval()
    with torch.no_grad():
        assert torch.equal(loaded(_x()), source(_x()))


def test_timm_pretrained_file_keeps_a_matching_head_and_drops_another(tmp_path):
    torch.manual_seed(0)
    source = _trained_like(create_model("resnet18", num_classes=10))
    path = tmp_path / "resnet18.safetensors"
    save_file(source.state_dict(), str(path))
    same = create_model("resnet18", num_classes=10, pretrained=True, pretrained_file=path).eval()
    with torch.no_grad():
        assert torch.equal(same(_x()), source(_x()))
    other = create_model("resnet18", num_classes=4, pretrained=True, pretrained_file=path)
    assert torch.equal(other.layer4[1].conv2.weight, source.layer4[1].conv2.weight)
    assert other.fc.weight.shape == (4, 512)


def test_missing_pretrained_file_names_model_and_path(tmp_path):
    path = tmp_path / "absent.safetensors"
    assert not pretrained_weights_available("small_cnn", path)
    for name in ("small_cnn", "vit_small_patch16_224"):
        with pytest.raises(PretrainedWeightsNotFound, match=re.escape(str(path))) as info:
            create_model(name, num_classes=10, pretrained=True, pretrained_file=path)
        assert isinstance(info.value, FileNotFoundError) and repr(name) in str(info.value)
    with pytest.raises(PretrainedWeightsNotFound, match="no pretrained_file"):
        create_model("small_cnn", num_classes=10, pretrained=True)


def test_timm_pretrained_without_file_looks_only_in_an_empty_local_cache(tmp_path, monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    assert not pretrained_weights_available("resnet18")
    with pytest.raises(PretrainedWeightsNotFound) as info:
        create_model("resnet18", num_classes=10, pretrained=True)
    message = str(info.value)
    assert str(tmp_path / "hub" / "models--timm--resnet18.a1_in1k") in message
    assert "timm.create_model('resnet18', pretrained=True)" in message


def test_timm_pretrained_found_in_local_cache(tmp_path, monkeypatch):
    hub = tmp_path / "hub"
    snapshot = hub / "models--timm--resnet18.a1_in1k" / "snapshots" / "0123abc"
    snapshot.mkdir(parents=True)
    (hub / "models--timm--resnet18.a1_in1k" / "refs").mkdir()
    (hub / "models--timm--resnet18.a1_in1k" / "refs" / "main").write_text("0123abc")
    torch.manual_seed(0)
    imagenet_like = create_model("resnet18", num_classes=1000)
    save_file(imagenet_like.state_dict(), str(snapshot / "model.safetensors"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(hub))
    assert pretrained_weights_available("resnet18")
    model = create_model("resnet18", num_classes=10, pretrained=True)
    assert torch.equal(model.conv1.weight, imagenet_like.conv1.weight) and model.fc.out_features == 10


def test_weights_of_another_architecture_are_rejected(tmp_path):
    path = tmp_path / "cnn.pt"
    torch.save(create_model("small_cnn", num_classes=10, features=(4, 8)).state_dict(), path)
    for name in ("vit_micro", "resnet18"):
        with pytest.raises(PretrainedWeightsNotFound, match=f"could not load pretrained weights for model '{name}'"):
            create_model(name, num_classes=10, pretrained=True, pretrained_file=path)


def test_corrupt_pretrained_file_is_reported(tmp_path):
    path = tmp_path / "broken.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(PretrainedWeightsNotFound, match="could not load pretrained weights for model 'small_cnn'"):
        create_model("small_cnn", num_classes=10, pretrained=True, pretrained_file=path)


def test_pretrained_file_without_pretrained_flag_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="pretrained=False"):
        create_model("small_cnn", num_classes=10, pretrained_file=tmp_path / "w.pt")


def test_vit_weights_at_224_patch16_load_at_32_patch4(tmp_path):
    torch.manual_seed(0)
    imagenet_like = create_model("vit_tiny_patch16_224", num_classes=1000, img_size=224)
    path = tmp_path / "vit_tiny.safetensors"
    save_file(imagenet_like.state_dict(), str(path))
    model = create_model(
        "vit_tiny_patch16_224", num_classes=10, img_size=32, patch_size=4, pretrained=True, pretrained_file=path
    ).eval()
    assert torch.equal(model.blocks[0].attn.qkv.weight, imagenet_like.blocks[0].attn.qkv.weight)
    assert model.pos_embed.shape == (1, 1 + 8 * 8, 192) and model.patch_embed.proj.weight.shape[-1] == 4
    with torch.no_grad():
        assert model(_x()).shape == (2, 10)


def test_cifar_stem_checkpoint_reloads_and_imagenet_stem_is_replaced(tmp_path):
    torch.manual_seed(0)
    cifar = _trained_like(create_model("resnet18", num_classes=10, cifar_stem=True))
    path = tmp_path / "cifar_resnet18.pt"
    torch.save(cifar.state_dict(), path)
    loaded = create_model("resnet18", num_classes=10, cifar_stem=True, pretrained=True, pretrained_file=path).eval()
    with torch.no_grad():
        assert torch.equal(loaded(_x()), cifar(_x()))

    imagenet_like = create_model("resnet18", num_classes=1000)
    path = tmp_path / "imagenet_resnet18.pt"
    torch.save(imagenet_like.state_dict(), path)
    adapted = create_model("resnet18", num_classes=10, cifar_stem=True, pretrained=True, pretrained_file=path)
    assert adapted.conv1.kernel_size == (3, 3)
    assert torch.equal(adapted.layer1[0].conv1.weight, imagenet_like.layer1[0].conv1.weight)


def test_catalog_hub_ids_are_timms_default_pretrained_tags():
    import timm

    from robustflow.model_catalog import TIMM_HUB_IDS

    assert {name: timm.models.get_pretrained_cfg(name).hf_hub_id for name in TIMM_HUB_IDS} == TIMM_HUB_IDS


# ----------------------------------------------------------------------------- WRN-40-2 and anti-aliasing

SMALL_CONFIGS["wide_resnet40_2"] = {}  # registered since the registry test above was written


def test_wide_resnet40_2_is_augmix_cifar_model():
    from robustflow.models.wide_resnet import WideBasicBlock

    model = create_model("wide_resnet40_2", num_classes=10)
    # the AugMix / xternalz WRN-40-2 for 10 classes: ~2.2M parameters
    assert sum(p.numel() for p in model.parameters()) == 2_243_546
    assert model.conv1.out_channels == 16 and model.head.in_features == 128 and model.num_features == 128
    for group, width in zip((model.block1, model.block2, model.block3), (32, 64, 128)):
        assert len(group) == 6 and all(isinstance(block, WideBasicBlock) for block in group)
        assert {block.conv2.out_channels for block in group} == {width}
    assert [b.conv1.stride for b in (model.block1[0], model.block2[0], model.block3[0])] == [(1, 1), (2, 2), (2, 2)]
    assert all(block.dropout.p == 0 for group in (model.block1, model.block2, model.block3) for block in group)
    assert isinstance(model.block1[0].bn1, torch.nn.BatchNorm2d)  # pre-activation: BN-ReLU before each conv
    with torch.no_grad():
        assert model.eval()(_x()).shape == (2, 10)
        assert model.forward_features(_x()).shape == (2, 128, 8, 8)
    assert create_model("wide_resnet40_2", num_classes=10, dropout=0.3).block2[3].dropout.p == 0.3


def test_blur_filter_keeps_the_state_dict_and_loads_plain_weights(tmp_path):
    torch.manual_seed(0)
    plain = _trained_like(create_model("small_cnn", num_classes=10, features=(4, 8)))
    path = tmp_path / "plain.pt"
    torch.save(plain.state_dict(), path)
    blurred = create_model("small_cnn", num_classes=10, features=(4, 8), blur_filter=3, pretrained=True,
                           pretrained_file=path).eval()
    assert blurred.state_dict().keys() == plain.state_dict().keys()
    with torch.no_grad():
        assert not torch.allclose(blurred(_x()), plain(_x()))
        subsampled = create_model("small_cnn", num_classes=10, features=(4, 8), blur_filter=1, pretrained=True,
                                  pretrained_file=path).eval()
        # filter 1: maxpool s1 + subsample = maxpool s2 (equal maps; the strided view may take another conv kernel)
        torch.testing.assert_close(subsampled(_x()), plain(_x()), rtol=1e-6, atol=1e-6)


def test_blur_filter_anti_aliases_every_downsampling():
    from robustflow.models.blurpool import BlurConv2d, BlurPool2d

    cnn = create_model("small_cnn", num_classes=10, features=(4, 8, 8), blur_filter=4)
    pools = [m for m in cnn.modules() if isinstance(m, BlurPool2d)]
    assert len(pools) == 3 and {p.filter_size for p in pools} == {4}
    assert all(m.stride == 1 for m in cnn.modules() if isinstance(m, torch.nn.MaxPool2d))

    wrn = create_model("wide_resnet40_2", num_classes=10, blur_filter=3)
    blurred = [name for name, m in wrn.named_modules() if isinstance(m, BlurConv2d)]
    assert blurred == ["block2.0.conv1", "block2.0.shortcut", "block3.0.conv1", "block3.0.shortcut"]
    assert wrn.state_dict().keys() == create_model("wide_resnet40_2", num_classes=10).state_dict().keys()

    resnet = create_model("resnet18", num_classes=10, blur_filter=5)
    aa = [m for m in resnet.modules() if isinstance(m, BlurPool2d)]
    assert len(aa) == 4 and {p.filter_size for p in aa} == {5}  # stem maxpool + 3 strided blocks
    assert resnet.layer2[0].conv1.stride == (1, 1) and isinstance(resnet.layer2[0].downsample[0], BlurConv2d)
    cifar = create_model("resnet18", num_classes=10, blur_filter=3, cifar_stem=True).eval()
    assert cifar.state_dict().keys() == create_model("resnet18", num_classes=10, cifar_stem=True).state_dict().keys()
    with torch.no_grad():
        assert cifar(_x()).shape == (2, 10) and wrn.eval()(_x()).shape == (2, 10)


def test_blur_filter_is_validated():
    for name in ("small_cnn", "wide_resnet40_2", "resnet18"):
        with pytest.raises(ValueError, match="blur filter size"):
            create_model(name, num_classes=10, blur_filter=9)
    with pytest.raises(TypeError, match="blur_filter"):
        create_model("vit_micro", num_classes=10, blur_filter=3)
    with pytest.raises(ValueError, match="CNNs only"):
        create_model("vit_tiny_patch16_224", num_classes=10, blur_filter=3)


def test_anti_aliased_timm_resnet_loads_plain_pretrained_weights(tmp_path):
    torch.manual_seed(0)
    source = _trained_like(create_model("resnet18", num_classes=10, cifar_stem=True))
    path = tmp_path / "resnet18.pt"
    torch.save(source.state_dict(), path)
    blurred = create_model("resnet18", num_classes=10, cifar_stem=True, blur_filter=3, pretrained=True,
                           pretrained_file=path)
    assert torch.equal(blurred.layer3[0].downsample[0].weight, source.layer3[0].downsample[0].weight)


@pytest.mark.parametrize("name, kwargs", [("small_cnn", dict(features=(4, 8))), ("wide_resnet40_2", {})])
def test_rotation_head_wrapper_adds_four_logits_in_training_only(name, kwargs):
    from robustflow.objectives import WithRotationHead, task_state_dict

    torch.manual_seed(0)
    model = WithRotationHead(create_model(name, num_classes=7, **kwargs))
    assert model.train()(_x()).shape == (2, 7 + 4)
    with torch.no_grad():
        task = model.eval()(_x())
    assert task.shape == (2, 7)
    plain = create_model(name, num_classes=7, **kwargs).eval()
    plain.load_state_dict(task_state_dict(model.state_dict()))
    with torch.no_grad():
        assert torch.equal(plain(_x()), task)
