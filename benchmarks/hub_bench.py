"""Hub benchmark: publish and pull a GPT-2 against an S3-protocol server on loopback (moto).

The peer, measured in the same run against the same server, is how people share checkpoints
without a hub: upload (and download) one ``model.safetensors`` file with boto3. Printed:

* publish of the first version: time and bytes against uploading the file;
* publish of a second version that differs in one tensor: bytes and time against re-uploading the
  whole file (the hub sends only what it lacks);
* pull of that version into an empty repository against downloading the file.

Run:  python benchmarks/hub_bench.py [--layers 12]   (GPT-2 small by default, random weights)
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=12, help="GPT-2 blocks (12: GPT-2 small)")
    args = parser.parse_args()

    import boto3
    import torch
    from safetensors.torch import save_file
    from transformers import GPT2Config, GPT2LMHeadModel

    import nbmodelhub as mh
    from nbmodelhub.render import human_bytes

    port = _port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_ENDPOINT_URL=endpoint, AWS_REGION="us-east-1"
    )
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        s3.create_bucket(Bucket="bench")

        torch.manual_seed(0)
        model = GPT2LMHeadModel(GPT2Config(n_layer=args.layers)).eval()
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            local = mh.open(root / "local")
            v1 = local.commit(model, name="gpt2", message="base")
            state = {k: v.contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}
            file = root / "model.safetensors"
            save_file(state, file)
            size = file.stat().st_size
            print(
                f"hub benchmark: GPT-2 with {args.layers} blocks, {v1.parameter_count / 1e6:.1f}M parameters, "
                f"{human_bytes(size)} as safetensors; moto S3 on loopback"
            )

            hub = "s3://bench/hub"
            t = time.perf_counter()
            first = local.publish("gpt2@1", hub=hub)
            t_publish = time.perf_counter() - t
            t = time.perf_counter()
            s3.upload_file(str(file), "bench", "plain/v1/model.safetensors")
            t_upload = time.perf_counter() - t
            print(
                f"publish v1        : {t_publish:6.2f} s, {human_bytes(first.bytes_sent):>9} sent | "
                f"boto3 upload of the file: {t_upload:6.2f} s, {human_bytes(size):>9} | "
                f"time ratio {t_publish / t_upload:.2f}x, bytes ratio {first.bytes_sent / size:.3f}"
            )

            changed = "transformer.h.0.mlp.c_fc.weight"
            with torch.no_grad():
                model.get_parameter(changed).add_(1e-3)
            local.commit(model, name="gpt2", message="one tensor changed")
            state = {k: v.contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}
            save_file(state, file)
            tensor_bytes = model.get_parameter(changed).numel() * 4
            t = time.perf_counter()
            second = local.publish("gpt2@2", hub=hub)
            t_publish2 = time.perf_counter() - t
            t = time.perf_counter()
            s3.upload_file(str(file), "bench", "plain/v2/model.safetensors")
            t_upload2 = time.perf_counter() - t
            print(
                f"publish v2 (1 of {len(v1.tensors)} tensors changed, {human_bytes(tensor_bytes)}): "
                f"{t_publish2:6.2f} s, {human_bytes(second.bytes_sent):>9} sent in {second.objects_sent} objects | "
                f"boto3 re-upload: {t_upload2:6.2f} s, {human_bytes(size):>9} | "
                f"bytes ratio {second.bytes_sent / size:.4f} ({size / max(second.bytes_sent, 1):.0f}x fewer), "
                f"time ratio {t_publish2 / t_upload2:.3f}x"
            )

            other = mh.open(root / "other")
            t = time.perf_counter()
            pulled = other.pull("gpt2@2", hub=hub)
            t_pull = time.perf_counter() - t
            t = time.perf_counter()
            s3.download_file("bench", "plain/v2/model.safetensors", str(root / "down.safetensors"))
            t_download = time.perf_counter() - t
            print(
                f"pull v2 (+ its parent): {t_pull:6.2f} s, {human_bytes(pulled.bytes_sent):>9} fetched, verified | "
                f"boto3 download of the file: {t_download:6.2f} s | time ratio {t_pull / t_download:.2f}x"
            )
            local.close()
            other.close()
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
