EXTRA_DIST += jobs/README.md jobs/setup.sh jobs/quickstart.sh jobs/bench_layouts.sh jobs/bench_tokenizer.sh jobs/bench_transformers_layer.py jobs/bench_serving.py
