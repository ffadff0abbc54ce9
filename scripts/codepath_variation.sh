#!/usr/bin/env bash
# How much do results move across CPU code paths of the numerical libraries? Reruns a config (default
# config/quick.yaml) up to its tables once per code-path variant, each in its own output folder, on the same scenes,
# then prints the largest difference of every metric across the variants (nre regress --measure) and checks each
# variant against the committed reference. The variants force the instruction set that torch's own kernels (ATen:
# softmax, exp, ...), MKL (torch's BLAS, CBWR branch), OpenBLAS (numpy's) and OpenCV's dispatcher pick at run time,
# as another CPU would (measured: MKL_ENABLE_INSTRUCTIONS changes no bit of torch's products here, while
# ATEN_CPU_CAPABILITY and MKL_CBWR=COMPATIBLE do):
#   scripts/codepath_variation.sh [config] [variant ...]     (variants: native avx2 sse42 openblas_haswell ...)
# A variant with the suffix +scenes (e.g. openblas_haswell+scenes) also regenerates the config's synthetic scenes
# under its code paths, in its own folder (what a fresh machine of another CPU does first).
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=${1:-config/quick.yaml}; shift || true
NAME=$(python -c "import yaml,sys; print(yaml.safe_load(open('$CONFIG'))['name'])")
VARIANTS=${*:-native aten_avx2 aten_default mkl_compat openblas_haswell opencv_noavx512 all_avx2 all_avx2+scenes}
env_of() {
  case ${1%+scenes} in
    native) echo "" ;;
    avx2) echo "MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2" ;;
    aten_avx2) echo "ATEN_CPU_CAPABILITY=avx2" ;;
    aten_default) echo "ATEN_CPU_CAPABILITY=default" ;;
    mkl_compat) echo "MKL_CBWR=COMPATIBLE" ;;
    sse42) echo "MKL_ENABLE_INSTRUCTIONS=SSE4_2 ONEDNN_MAX_CPU_ISA=SSE41" ;;
    openblas_haswell) echo "OPENBLAS_CORETYPE=Haswell" ;;
    openblas_sandybridge) echo "OPENBLAS_CORETYPE=Sandybridge" ;;
    opencv_noavx512) echo "OPENCV_CPU_DISABLE=AVX512_SKX,AVX512_COMMON,AVX512_KNL,AVX512_KNM,AVX512_CNL,AVX512_CLX,AVX512_ICL" ;;
    all_avx2) echo "ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2 OPENBLAS_CORETYPE=Haswell OPENCV_CPU_DISABLE=AVX512_SKX,AVX512_COMMON,AVX512_KNL,AVX512_KNM,AVX512_CNL,AVX512_CLX,AVX512_ICL" ;;
    *) echo "unknown variant $1" >&2; exit 2 ;;
  esac
}
mkdir -p "work/codepath/$NAME"
dirs=()
for v in $VARIANTS; do
  out=work/codepath/$NAME/$v
  e=$(env_of "$v")
  echo "== $v: ${e:-(no override)} -> $out"
  t0=$(date +%s)
  data=()
  if [[ $v == *+scenes ]]; then
    data=("data={root: $out/synth}")  # merged into the config's data: only the scene folder changes
  fi
  env $e snakemake --cores 2 --configfile "$CONFIG" --config "out=$out" "${data[@]}" \
    -- "$out/eval/table1_paper.md" > "work/codepath/$NAME/$v.log" 2>&1 || { echo "   failed, see work/codepath/$NAME/$v.log"; continue; }
  echo "   $(( $(date +%s) - t0 )) s"
  dirs+=("$out/eval")
done
nre regress --measure "${dirs[@]}"
for d in "${dirs[@]}"; do
  echo "== $d vs results/$NAME"
  nre regress --reference "results/$NAME" --current "$d" --config "$CONFIG" --pairs "$(dirname "$d")/pairs.csv" | tail -n 20 || true
done
