"""An independent reference of the authors' released Conv2Former classifier, written from the specification in the
authors' own style (hand-written channels_first LayerNorm, NCHW throughout). Used only to check parity."""
import torch
import torch.nn as nn
import torch.nn.functional as F


class RefLayerNorm(nn.Module):
    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.eps = eps

    def forward(self, x):
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class RefMLP(nn.Module):
    def __init__(self, dim, mlp_ratio=4):
        super().__init__()
        self.norm = RefLayerNorm(dim)
        self.fc1 = nn.Conv2d(dim, dim * mlp_ratio, 1)
        self.pos = nn.Conv2d(dim * mlp_ratio, dim * mlp_ratio, 3, padding=1, groups=dim * mlp_ratio)
        self.fc2 = nn.Conv2d(dim * mlp_ratio, dim, 1)

    def forward(self, x):
        x = F.gelu(self.fc1(self.norm(x)))
        x = x + F.gelu(self.pos(x))
        return self.fc2(x)


class RefConvMod(nn.Module):
    def __init__(self, dim, k):
        super().__init__()
        self.norm = RefLayerNorm(dim)
        self.att = nn.Sequential(nn.Conv2d(dim, dim, 1), nn.GELU(), nn.Conv2d(dim, dim, k, padding=k // 2, groups=dim))
        self.v = nn.Conv2d(dim, dim, 1)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x):
        x = self.norm(x)
        return self.proj(self.att(x) * self.v(x))


class RefBlock(nn.Module):
    def __init__(self, dim, k):
        super().__init__()
        self.attn = RefConvMod(dim, k)
        self.mlp = RefMLP(dim)
        self.layer_scale_1 = nn.Parameter(1e-6 * torch.ones(dim))
        self.layer_scale_2 = nn.Parameter(1e-6 * torch.ones(dim))

    def forward(self, x):
        x = x + self.layer_scale_1.unsqueeze(-1).unsqueeze(-1) * self.attn(x)
        return x + self.layer_scale_2.unsqueeze(-1).unsqueeze(-1) * self.mlp(x)


class RefConv2Former(nn.Module):
    def __init__(self, depths, dims, kernel_size, num_classes=1000):
        super().__init__()
        self.downsample_layers = nn.ModuleList([nn.Sequential(
            nn.Conv2d(3, dims[0] // 2, 3, 2, 1, bias=False), nn.GELU(), nn.BatchNorm2d(dims[0] // 2),
            nn.Conv2d(dims[0] // 2, dims[0] // 2, 3, 1, 1, bias=False), nn.GELU(), nn.BatchNorm2d(dims[0] // 2),
            nn.Conv2d(dims[0] // 2, dims[0], 2, 2, bias=False))])
        for i in range(3):
            self.downsample_layers.append(nn.Sequential(RefLayerNorm(dims[i]), nn.Conv2d(dims[i], dims[i + 1], 2, 2)))
        self.stages = nn.ModuleList(nn.Sequential(*[RefBlock(dims[i], kernel_size) for _ in range(depths[i])])
                                    for i in range(4))
        self.head = nn.Sequential(nn.Conv2d(dims[-1], 1280, 1), nn.GELU(), RefLayerNorm(1280))
        self.pred = nn.Linear(1280, num_classes)

    def stage_outputs(self, x):
        outs = []
        for down, stage in zip(self.downsample_layers, self.stages):
            x = stage(down(x))
            outs.append(x)
        return outs

    def forward(self, x):
        x = self.stage_outputs(x)[-1]
        return self.pred(self.head(x).mean((2, 3)))


def randomize_(model, seed=0):
    """Random weights everywhere (layer scales and BN stats included) so parity is tested on every parameter."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in list(model.named_parameters()) + list(model.named_buffers()):
            if t.dtype.is_floating_point:
                if name.endswith('running_var'):
                    t.copy_(torch.rand(t.shape, generator=g) + 0.5)
                elif 'layer_scale' in name:
                    t.copy_(torch.rand(t.shape, generator=g) * 0.5 + 0.25)
                else:
                    t.copy_(torch.randn(t.shape, generator=g) * (0.5 / max(1, t[0].numel()) ** 0.5))
    return model
