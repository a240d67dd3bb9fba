"""Inside the zoo's own networks: the shortcut and branch structure of ResNet, GoogLeNet and Inception v3.

Read from the architectures themselves, not typed in: each model is built bare (no weights: the
structure and the parameter counts do not depend on them) on PyTorch's meta device, so nothing is
allocated or downloaded, and every block is traced with torch.fx. A block whose graph splits and
merges again (a residual add, an Inception concatenation) is listed with its branches: the operations
on each path from the block's input to the merge, the parameters of each, and how many distinct paths
a signal can take through it.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass

import torch
import torch.fx as fx
from torch import nn

from ..models import MODELS

NETWORKS = ("resnet18", "resnet50", "googlenet", "inception_v3")


@dataclass(frozen=True)
class Branch:
    ops: tuple[str, ...]       # what the path computes, input to merge ("1x1 conv", "3x3 max pool"); () = identity
    params: int
    channels: int              # channels the path hands to the merge

    @property
    def label(self) -> str:
        return " → ".join(self.ops) if self.ops else "identity (the shortcut)"


@dataclass(frozen=True)
class Block:
    group: str                 # the layer group it sits in (the zoo's groups)
    name: str                  # its module path ("layer2.0", "inception3a", "Mixed_7b")
    merge: str                 # "add" (a shortcut), "concat" (Inception branches) or "" (one path)
    paths: int                 # distinct input-to-output paths through the block
    params: int
    branches: tuple[Branch, ...]


@dataclass(frozen=True)
class Structure:
    name: str
    title: str
    blocks: tuple[Block, ...]
    total_params: int          # the whole model's, head and auxiliary classifier included

    @property
    def paths(self) -> int:
        """Input-to-output paths through the whole stack: the product of every block's."""
        n = 1
        for b in self.blocks:
            n *= b.paths
        return n


def _module_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _describe(node: fx.Node, root: nn.Module) -> tuple[str | None, int, int]:
    """(label or None to leave out, parameters, output channels) of one traced operation."""
    if node.op == "call_module":
        m = root.get_submodule(node.target)
        params = _module_params(m)
        if isinstance(m, nn.Conv2d):
            k = "x".join(str(v) for v in m.kernel_size)
            stride = f" /{m.stride[0]}" if max(m.stride) > 1 else ""
            return f"{k} conv{stride}", params, m.out_channels
        if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
            k = m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]
            return f"{k}x{k} {'max' if isinstance(m, nn.MaxPool2d) else 'avg'} pool", params, 0
        return None, params, 0   # BatchNorm, ReLU: counted, not drawn
    if node.op == "call_function" and node.name.startswith(("max_pool2d", "avg_pool2d")):
        k = node.args[1] if len(node.args) > 1 else node.kwargs.get("kernel_size", 3)
        k = k if isinstance(k, int) else k[0]
        return f"{k}x{k} {'max' if node.name.startswith('max') else 'avg'} pool", 0, 0
    return None, 0, 0


def _ancestors(node: fx.Node) -> set[fx.Node]:
    seen, stack = set(), [node]
    while stack:
        n = stack.pop()
        if n in seen or n.op == "placeholder":
            continue
        seen.add(n)
        stack.extend(n.all_input_nodes)
    return seen


def _is_merge(node: fx.Node) -> bool:
    return node.op == "call_function" and node.target in (torch.cat, operator.add, operator.iadd, torch.add) \
        and len(node.all_input_nodes) >= 2


def read_block(module: nn.Module, group: str, name: str) -> Block:
    """One block's branches, traced from its forward (a single layer is one path)."""
    params = _module_params(module)
    if not list(module.children()):
        return Block(group, name, "", 1, params, ())
    graph = fx.symbolic_trace(module).graph
    nodes = list(graph.nodes)
    paths: dict[fx.Node, int] = {}
    for n in nodes:   # paths from the input to each node: the sum over its inputs (topological order)
        paths[n] = 1 if n.op == "placeholder" else sum(paths[i] for i in n.all_input_nodes) or 1
    out = next(n for n in nodes if n.op == "output")
    merges = [n for n in nodes if _is_merge(n)]
    if not merges:
        return Block(group, name, "", 1, params, ())
    merge = merges[-1]   # the block's last merge: its branches are the inputs of it
    order = {n: i for i, n in enumerate(nodes)}
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    in_channels = convs[0].in_channels if convs else 0
    branches = tuple(_branch(arm, module, order, in_channels) for arm in merge.all_input_nodes)
    kind = "concat" if merge.target is torch.cat else "add"
    return Block(group, name, kind, paths[out], params, branches)


def _branch(arm: fx.Node, root: nn.Module, order: dict[fx.Node, int], in_channels: int) -> Branch:
    """The path from the block's input to one input of its merge. A split inside it (Inception v3's
    1x3 and 3x1 side by side) is drawn as (a | b)."""
    nodes = sorted(_ancestors(arm), key=order.get) if arm.op != "placeholder" else []
    lanes: dict[fx.Node, list[list[fx.Node]]] = {}
    inside: set[fx.Node] = set()
    for n in nodes:
        if _is_merge(n):
            sets = [_ancestors(i) for i in n.all_input_nodes]
            common = set.intersection(*sets)
            lanes[n] = [sorted(a - common, key=order.get) for a in sets]
            inside |= set().union(*(a - common for a in sets))
    ops, params, channels = [], 0, in_channels
    for n in nodes:
        label, p, c = _describe(n, root)
        params += p
        if n in lanes:
            parts = [" → ".join(lb for lb in (_describe(m, root)[0] for m in lane) if lb) for lane in lanes[n]]
            ops.append("(" + " | ".join(parts) + ")")
            channels = sum(_out_channels(lane, root) or in_channels for lane in lanes[n])
        elif n not in inside and label:
            ops.append(label)
            channels = c or channels
    return Branch(tuple(ops), params, channels)


def _out_channels(lane: list[fx.Node], root: nn.Module) -> int:
    """Output channels of the last convolution in a lane (0 if it has none)."""
    for n in reversed(lane):
        if n.op == "call_module" and isinstance(root.get_submodule(n.target), nn.Conv2d):
            return root.get_submodule(n.target).out_channels
    return 0


def _blocks_of(module: nn.Module, path: str) -> list[tuple[str, nn.Module]]:
    """A group's module path as blocks: a Sequential of blocks (ResNet's layer1) opens into them."""
    if isinstance(module, nn.Sequential) and len(module) and all(len(list(m.children())) for m in module):
        return [(f"{path}.{i}", m) for i, m in enumerate(module)]
    return [(path, module)]


def structure(name: str) -> Structure:
    """The network's blocks, group by group, built bare on the meta device (nothing allocated)."""
    if name not in NETWORKS:
        raise ValueError(f"choose one of {', '.join(NETWORKS)}, not {name!r}")
    spec = MODELS[name]
    with torch.device("meta"):
        model = spec.build()
    blocks = []
    for group, paths in spec.groups:
        for path in paths:
            if path.startswith("@"):
                continue
            for sub, module in _blocks_of(model.get_submodule(path), path):
                blocks.append(read_block(module, group, sub))
    return Structure(name, spec.title, tuple(blocks), _module_params(model))
