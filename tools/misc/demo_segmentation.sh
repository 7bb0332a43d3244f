#!/usr/bin/env bash
# The segmentation quickstart, end to end on CPU in a few minutes (`make demo-segmentation`):
#   1. a synthetic ADE20K-layout dataset (200 training / 20 validation images) in data/synthetic_ade,
#   2. UperNet Conv2Former-N trained from scratch through tools/train.py (progress bar, 300 iterations), which
#      evaluates mIoU with mmseg's IoUMetric at the end and draws ground truth | prediction for every 10th
#      validation image,
#   3. one of those pictures copied to $WORK_DIR/prediction_vs_ground_truth.png, and the metrics printed.
# Environment: PYTHON (default .venv/bin/python), WORK_DIR (default work_dirs/demo_segmentation).
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-.venv/bin/python}
WORK_DIR=${WORK_DIR:-work_dirs/demo_segmentation}
CONFIG=configs/quickstart/upernet_conv2former-n_1xb4-300_synthetic-ade-64x64.py

"$PYTHON" tools/dataset_converters/make_synthetic_ade.py --out data/synthetic_ade --num-train 200 --num-val 20 --seed 0
"$PYTHON" tools/train.py "$CONFIG" --work-dir "$WORK_DIR"

run_dir=$(ls -d "$WORK_DIR"/2*/ | tail -n 1)  # this run's <timestamp>/ folder
picture=$(ls "$run_dir"vis_data/vis_image/*.png | head -n 1)
cp "$picture" "$WORK_DIR/prediction_vs_ground_truth.png"
echo
echo "Validation metrics: $(grep '"mIoU"' "$run_dir"vis_data/scalars.json | tail -n 1)"
echo "Checkpoint:         $WORK_DIR/iter_300.pth"
echo "Picture:            $WORK_DIR/prediction_vs_ground_truth.png (left: ground truth, right: prediction)"
