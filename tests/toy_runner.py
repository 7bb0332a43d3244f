"""A real mmengine Runner around a tiny model, for tests of checkpointing and training-loop hooks."""
import torch
import torch.nn as nn
from mmengine.model import BaseModel
from mmengine.runner import Runner


class ToyModel(BaseModel):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, labels=None, mode='tensor'):
        out = self.linear(inputs)
        return {'loss': ((out.squeeze(-1) - labels) ** 2).mean()} if mode == 'loss' else out


def toy_data(n=8, nan_at=None):
    """`n` samples; the label of sample `nan_at` is NaN (to make that iteration's loss NaN)."""
    g = torch.Generator().manual_seed(0)
    return [dict(inputs=torch.randn(2, generator=g),
                 labels=torch.tensor(float('nan')) if i == nan_at else torch.randn((), generator=g))
            for i in range(n)]


def make_runner(work_dir, max_iters, resume=False, data=None, custom_hooks=None, checkpoint_interval=2):
    return Runner(model=ToyModel(), work_dir=str(work_dir), experiment_name=f'toy_{max_iters}_{resume}',
                  train_dataloader=dict(dataset=data or toy_data(), sampler=dict(type='DefaultSampler', shuffle=False),
                                        batch_size=2, collate_fn=dict(type='default_collate')),
                  train_cfg=dict(by_epoch=False, max_iters=max_iters),
                  optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1, momentum=0.9)),
                  param_scheduler=dict(type='MultiStepLR', milestones=[2], by_epoch=False),
                  default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=checkpoint_interval,
                                                     by_epoch=False)),
                  custom_hooks=custom_hooks, resume=resume, default_scope='mmengine')
