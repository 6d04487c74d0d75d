"""Builds a Perturb .safetensors model as a PyTorch nn.Module, and loads Perturb's saved attack inputs.

The file is an 8-byte little-endian header length, a JSON header (dtype, shape, data_offsets per tensor; the
architecture as JSON under __metadata__["perturb.architecture"]), then raw little-endian float32 data. The graph is a
DAG of nodes (name, type, inputs, config); the layers of the presets (lenet, cnn-small, resnet18) are supported:
Normalize, Conv2d, BatchNorm2d, ReLU, MaxPool2d, AvgPool2d, GlobalAvgPool, Flatten, Dropout, Linear, Add.
No safetensors package needed (Debian's torch 1.13 and numpy only).
"""
import json
import struct
import sys
import types

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", {})
    tensors = {}
    for name, h in header.items():
        if h["dtype"] != "F32":
            raise ValueError(f"{path}: tensor {name} is {h['dtype']}, expected F32")
        a, b = h["data_offsets"]
        tensors[name] = torch.from_numpy(np.frombuffer(data[a:b], dtype="<f4").reshape(h["shape"]).copy())
    return tensors, meta


class PerturbNet(nn.Module):
    """The DAG of a Perturb architecture, in eval mode (BatchNorm on running statistics, dropout off)."""

    def __init__(self, arch, tensors):
        super().__init__()
        self.nodes = arch["nodes"]
        self.layers = nn.ModuleDict()
        self.fns = {}
        for node in self.nodes:
            name, kind, cfg = node["name"], node["type"], node.get("config", {})
            key = name.replace(".", "_")
            if kind == "Conv2d":
                m = nn.Conv2d(cfg["in_channels"], cfg["out_channels"], (cfg["kernel"], cfg.get("kernel_w", cfg["kernel"])),
                              (cfg["stride"], cfg.get("stride_w", cfg["stride"])), (cfg["padding"], cfg.get("padding_w", cfg["padding"])),
                              (cfg["dilation"], cfg.get("dilation_w", cfg["dilation"])), cfg["groups"], cfg["bias"])
                m.weight.data = tensors[name + ".weight"]
                if cfg["bias"]:
                    m.bias.data = tensors[name + ".bias"]
                self.layers[key] = m
            elif kind == "Linear":
                m = nn.Linear(cfg["in"], cfg["out"], cfg["bias"])
                m.weight.data = tensors[name + ".weight"]
                if cfg["bias"]:
                    m.bias.data = tensors[name + ".bias"]
                self.layers[key] = m
            elif kind == "BatchNorm2d":
                m = nn.BatchNorm2d(cfg["channels"], eps=cfg["eps"], momentum=cfg["momentum"])
                for p in ("weight", "bias", "running_mean", "running_var"):
                    getattr(m, p).data = tensors[f"{name}.{p}"]
                self.layers[key] = m
            elif kind == "Normalize":
                mean = torch.tensor(cfg["mean"], dtype=torch.float32).view(1, -1, 1, 1)
                std = torch.tensor(cfg["std"], dtype=torch.float32).view(1, -1, 1, 1)
                self.register_buffer(key + "_mean", mean)
                self.register_buffer(key + "_std", std)
                self.fns[name] = (lambda k: lambda x: (x - getattr(self, k + "_mean")) / getattr(self, k + "_std"))(key)
            elif kind == "ReLU":
                self.fns[name] = F.relu
            elif kind in ("MaxPool2d", "AvgPool2d"):
                k, s, p = (cfg["kernel"], cfg.get("kernel_w", cfg["kernel"])), (cfg["stride"], cfg.get("stride_w", cfg["stride"])), (cfg["padding"], cfg.get("padding_w", cfg["padding"]))
                if kind == "MaxPool2d":
                    self.fns[name] = (lambda k, s, p, c: lambda x: F.max_pool2d(x, k, s, p, ceil_mode=c))(k, s, p, cfg.get("ceil_mode", False))
                else:
                    self.fns[name] = (lambda k, s, p, c, i: lambda x: F.avg_pool2d(x, k, s, p, ceil_mode=c, count_include_pad=i))(k, s, p, cfg.get("ceil_mode", False), cfg.get("count_include_pad", True))
            elif kind == "GlobalAvgPool":
                self.fns[name] = lambda x: x.mean(dim=(2, 3), keepdim=True)
            elif kind == "Flatten":
                self.fns[name] = lambda x: x.flatten(1)
            elif kind == "Dropout":
                self.fns[name] = lambda x: x
            elif kind == "Add":
                self.fns[name] = None
            else:
                raise ValueError(f"layer type {kind} ({name}) is not supported by the peer loader")
        self.eval()

    def forward(self, x):
        outs = {"input": x}
        y = x
        for node in self.nodes:
            name, ins = node["name"], [outs[i] for i in node["inputs"]]
            key = name.replace(".", "_")
            if node["type"] == "Add":
                y = ins[0] + ins[1]
            elif key in self.layers:
                y = self.layers[key](ins[0])
            else:
                y = self.fns[name](ins[0])
            outs[name] = y
        return y


def load_model(path):
    tensors, meta = read_safetensors(path)
    arch = json.loads(meta["perturb.architecture"])
    net = PerturbNet(arch, tensors)
    for p in net.parameters():
        p.requires_grad_(False)
    return net, arch


def load_inputs(folder):
    """originals.npy (float32 N x C x H x W) and labels.npy written by `perturb attack ... --out folder`."""
    x = torch.from_numpy(np.load(f"{folder}/originals.npy").astype(np.float32))
    y = torch.from_numpy(np.load(f"{folder}/labels.npy").astype(np.int64))
    return x, y


def import_torchattacks(repo):
    """torchattacks from its source tree without running its __init__ (which imports scipy for attacks not used here)."""
    m = types.ModuleType("torchattacks")
    m.__path__ = [f"{repo}/torchattacks"]
    sys.modules["torchattacks"] = m
    from torchattacks.attacks.apgd import APGD
    from torchattacks.attacks.autoattack import AutoAttack
    from torchattacks.attacks.cw import CW
    from torchattacks.attacks.fgsm import FGSM
    from torchattacks.attacks.pgd import PGD
    return types.SimpleNamespace(APGD=APGD, AutoAttack=AutoAttack, CW=CW, FGSM=FGSM, PGD=PGD)


def import_foolbox(foolbox_repo, eagerpy_repo):
    """Foolbox 3 and eagerpy from their source trees (bethgelab/foolbox, jonasrauber/eagerpy). Foolbox's __init__
    imports every attack and its model zoo: the blur attack imports scipy and the zoo GitPython, which this machine
    lacks. For each one absent, a stand-in module whose one name raises when called is put in sys.modules (neither
    the blur attack nor the zoo is used here)."""
    sys.path[:0] = [eagerpy_repo, foolbox_repo]
    for package, attr in (("scipy.ndimage.filters", "gaussian_filter"), ("git", "Repo")):
        try:
            __import__(package)
        except ImportError:
            def absent(*a, _p=package, **k):
                raise RuntimeError(f"{_p} is absent: the foolbox part that needs it cannot run")
            parts = package.split(".")
            for i in range(len(parts)):
                sys.modules[".".join(parts[:i + 1])] = types.ModuleType(".".join(parts[:i + 1]))
            setattr(sys.modules[package], attr, absent)
    import foolbox
    return foolbox
