#!/usr/bin/env bash
# A quickstart, end to end on CPU (`make demo-detection`, `make demo-segmentation`):
#   bash tools/misc/demo.sh TASK [tools/train.py arguments...]     TASK: detection or segmentation
#   1. a synthetic dataset:
#        detection:    COCO format, 240 training / 48 validation images of 128x128, in data/synthetic_coco;
#        segmentation: ADE20K layout, 200 training / 20 validation images, in data/synthetic_ade,
#   2. the quickstart model trained from scratch through tools/train.py (progress bar, 300 iterations), which
#      evaluates at the end and draws ground truth | prediction for some validation images:
#        detection:    Mask R-CNN Conv2Former-N, bbox and segm AP with mmdet's CocoMetric, every 4th batch;
#        segmentation: UperNet Conv2Former-N, mIoU with mmseg's IoUMetric, every 10th image,
#   3. one of those pictures copied to $WORK_DIR/prediction_vs_ground_truth.png, and the metrics printed.
# Arguments after TASK are passed on to tools/train.py, e.g. --cfg-options train_cfg.max_iters=100 for a shorter run.
# Environment: PYTHON (default .venv/bin/python), WORK_DIR (default work_dirs/demo_TASK).
set -euo pipefail

usage() {
  echo "usage: [PYTHON=.venv/bin/python WORK_DIR=work_dirs/demo_TASK] $0 detection|segmentation [train.py args...]" >&2
  exit 2
}
[ $# -ge 1 ] || usage
TASK=$1
shift
case "$TASK" in
  detection)
    CONFIG=configs/quickstart/mask-rcnn_conv2former-n_fpn_1xb4-300i_synthetic-coco-128x128.py
    MAKE_DATA=(tools/dataset_converters/make_synthetic_coco.py --out data/synthetic_coco --seed 0)
    METRIC=coco/bbox_mAP
    ;;
  segmentation)
    CONFIG=configs/quickstart/upernet_conv2former-n_1xb4-300_synthetic-ade-64x64.py
    MAKE_DATA=(tools/dataset_converters/make_synthetic_ade.py --out data/synthetic_ade --num-train 200 --num-val 20
               --seed 0)
    METRIC=mIoU
    ;;
  *)
    echo "unknown task '$TASK'" >&2
    usage
    ;;
esac

cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-.venv/bin/python}
WORK_DIR=${WORK_DIR:-work_dirs/demo_$TASK}

"$PYTHON" "${MAKE_DATA[@]}"
"$PYTHON" tools/train.py "$CONFIG" --work-dir "$WORK_DIR" "$@"

run_dir=$(ls -d "$WORK_DIR"/2*/ | tail -n 1)  # this run's <timestamp>/ folder
picture=$(ls "$run_dir"vis_data/vis_image/*.png | head -n 1)
cp "$picture" "$WORK_DIR/prediction_vs_ground_truth.png"
echo
echo "Validation metrics: $(grep "\"$METRIC\"" "$run_dir"vis_data/scalars.json | tail -n 1)"
checkpoint=$(cat "$WORK_DIR/last_checkpoint")
echo "Checkpoint:         $checkpoint"
echo "Picture:            $WORK_DIR/prediction_vs_ground_truth.png (left: ground truth, right: prediction)"
if [ "$TASK" = detection ]; then
  echo "Predict on any image: $PYTHON demo/image_demo.py IMAGE $CONFIG $checkpoint"
fi
