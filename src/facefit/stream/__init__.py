"""Recognition on live video: ``facefit stream SOURCE``.

``source`` opens webcams, files and RTSP/HTTP streams; ``detect`` finds faces
on some frames; ``tracker`` (with ``propagate``) follows them in between;
``identity`` decides when to identify a track and keeps a stable label;
``overlay``, ``video_out``, ``display`` and ``events`` are the outputs;
``runner`` ties them together. Nothing heavy is imported here.
"""

# Chosen with ``facefit bench stream`` and faster variants of its video: with optical-flow tracking in
# between, boxes on faces moving up to 20 px a frame stay as good as detecting on every frame (IoU with the
# true face 0.78 either way; without tracking it falls to 0.53), at 3-4x the frame rate of detect-every-1.
# Here so the CLI can show it without importing anything.
DEFAULT_DETECT_EVERY = 5
