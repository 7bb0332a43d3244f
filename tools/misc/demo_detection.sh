#!/usr/bin/env bash
# The detection quickstart, end to end on CPU (`make demo-detection`):
#   1. a synthetic COCO-format dataset (240 training / 48 validation images of 128x128) in data/synthetic_coco,
#   2. Mask R-CNN Conv2Former-N trained from scratch through tools/train.py (progress bar, 300 iterations), which
#      evaluates bbox and segm AP with mmdet's CocoMetric at the end and draws ground truth | prediction for every
#      4th validation batch,
#   3. one of those pictures copied to $WORK_DIR/prediction_vs_ground_truth.png, and the metrics printed.
# Arguments are passed on to tools/train.py, e.g. --cfg-options train_cfg.max_iters=100 for a shorter run.
# Environment: PYTHON (default .venv/bin/python), WORK_DIR (default work_dirs/demo_detection).
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-.venv/bin/python}
WORK_DIR=${WORK_DIR:-work_dirs/demo_detection}
CONFIG=configs/quickstart/mask-rcnn_conv2former-n_fpn_1xb4-300i_synthetic-coco-128x128.py

"$PYTHON" tools/dataset_converters/make_synthetic_coco.py --out data/synthetic_coco --seed 0
"$PYTHON" tools/train.py "$CONFIG" --work-dir "$WORK_DIR" "$@"

run_dir=$(ls -d "$WORK_DIR"/2*/ | tail -n 1)  # this run's <timestamp>/ folder
picture=$(ls "$run_dir"vis_data/vis_image/*.png | head -n 1)
cp "$picture" "$WORK_DIR/prediction_vs_ground_truth.png"
echo
echo "Validation metrics: $(grep '"coco/bbox_mAP"' "$run_dir"vis_data/scalars.json | tail -n 1)"
checkpoint=$(cat "$WORK_DIR/last_checkpoint")
echo "Checkpoint:         $checkpoint"
echo "Picture:            $WORK_DIR/prediction_vs_ground_truth.png (left: ground truth, right: prediction)"
echo "Predict on any image: $PYTHON demo/image_demo.py IMAGE $CONFIG $checkpoint"
