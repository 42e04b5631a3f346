#!/bin/sh
# Tokenizer encode throughput, single thread, on >= 10 MB of mixed multilingual
# text; and, where Python's `tokenizers` is importable, the same encode by
# Hugging Face tokenizers with a check that the ids are identical.
#
#   jobs/bench_tokenizer.sh [--tokenizer FILE] [--furrow BIN] [--mb N] [--chunk BYTES]
#                           [--out DIR] [--runs N]
#
# The text is built deterministically, with no download: every text of the golden
# tokenizer.jsonl, then paragraphs generated from a fixed seed (English prose and
# made-up words, C and Python code with indentation and CRLF lines, Chinese,
# Japanese, Korean, Russian, Arabic, Hindi, Greek, accented Latin, numbers and
# dates, emoji with ZWJ sequences and skin tones, fullwidth forms, whitespace
# runs). Its SHA-256 is printed, so two machines can check they measured the same.
#
# Fairness: both encoders get the same pieces. The text is cut into chunks of at
# most --chunk bytes (default 65536), each ending after the last newline inside it
# (else at a character boundary): `furrow tokenize --chunk` and the Python loop
# below cut identically, and each chunk is one encode call without special tokens
# (tokenizers: Tokenizer.from_file(...).encode(chunk, add_special_tokens=False),
# with RAYON_NUM_THREADS=1 and TOKENIZERS_PARALLELISM=false). Only encoding is
# timed: not loading the tokenizer, reading the file, or (Python) decoding the
# chunks to str beforehand. Each side runs --runs times (default 3) in fresh
# processes, cold caches included; the best run is reported.
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
shared=${FURROW_SHARED:-$here/../shared}
tokenizer=$shared/tokenizer/deepseek-v3/tokenizer.json
golden=$shared/golden/tokenizer.jsonl
furrow=${FURROW_BIN:-$here/furrow}
mb=12
chunk=65536
runs=3
out=${TMPDIR:-/tmp}/furrow-bench-tokenizer

while [ $# -gt 0 ]; do
  case $1 in
    --tokenizer) tokenizer=$2; shift 2 ;;
    --furrow) furrow=$2; shift 2 ;;
    --mb) mb=$2; shift 2 ;;
    --chunk) chunk=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    -h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench_tokenizer.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[ -f "$tokenizer" ] || { echo "bench_tokenizer.sh: no tokenizer at $tokenizer (--tokenizer FILE)" >&2; exit 1; }
[ -x "$furrow" ] || { echo "bench_tokenizer.sh: no furrow binary at $furrow (--furrow BIN)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "bench_tokenizer.sh: python3 is needed to build the text" >&2; exit 1; }
mkdir -p "$out"
text=$out/text.txt

# ---- 1. the text ----
python3 - "$text" "$mb" "$golden" <<'PY'
import json, os, random, sys

path, mb, golden = sys.argv[1], float(sys.argv[2]), sys.argv[3]
target = int(mb * 1e6)
R = random.Random(20260311)

EN = ("the of and to in is that for it as was with be by on not he this are or his from at which "
      "but have an they you were her she there been one all we their has would when if so no what "
      "can more about time people could them other than into model tokens parallel rank tensor "
      "pipeline expert memory bandwidth kernel cluster node latency throughput inference cache "
      "batch request server stream weights checkpoint shard layer attention router gate scale").split()
SYL = "ka to ri mon ex ter pre ing al ly tion ment qu zy vor stra blen dor ish ent ous phy cro".split()
ZH = ("的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后小么"
      "心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长知民样现分"
      "将外但身些与高意进把法此实回二理美点月明其种声全工己话儿者向情部正名定女问力机给等几很业最间新什打便位因重"
      "被走电四第门相次东政海口使教西再平真听世气信北少关并内加化由却代军产入先山五太水万市眼体别处总才场师书比住"
      "员九笑性通目华报立马命张活难神数件安表原车白应路期叫死常提感金何更反合放做系计或司利受光王果亲界及今京务制"
      "深度求索模型语言大规模推理训练数据参数专家并行计算显存带宽").strip()
JA_KANA = [chr(c) for c in list(range(0x3041, 0x3094)) + list(range(0x30A1, 0x30F7))]
KO = "가나다라마바사아자차카타파하는은이가를에서의와과도로한국어세계안녕하세요감사합니다모델토큰병렬추론"
RU = ("и в не на я быть он с что а по это она этот к но они мы как из у который то за свой весь год от так о "
      "для ты же все тот мочь вы человек такой его сказать только или ещё модель токен память сервер").split()
AR = "في من على إلى أن هذا التي الذي كان عن مع هذه كل بين قد ذلك لا ما هو نموذج اللغة العالم مرحبا".split()
HI = "है के में की और को से का एक यह पर भी नहीं हैं था कि जो कर मॉडल भाषा दुनिया नमस्ते".split()
EL = "και το της του η να σε με για που τα στο ένα μοντέλο γλώσσα κόσμος".split()
LAT = ("über straße größe mädchen être où déjà très français élève garçon niño señor año mañana "
       "ação coração não søster æble østers zürich łódź český").split()
EMOJI = ["😀", "🚀", "👍🏽", "👩‍💻", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇯🇵", "🇺🇸", "❤️", "✨", "🔥", "🤖", "🧠", "⚡", "🎉"]
IDENT = "x y i j n buf len count rank comm tensor weight scale out in tmp size offset ptr data".split()

def pick(xs): return xs[R.randrange(len(xs))]
def word():
    return pick(EN) if R.random() < 0.85 else "".join(pick(SYL) for _ in range(R.randint(2, 4)))
def number():
    k = R.randrange(6)
    if k == 0: return str(R.randrange(10 ** R.randint(1, 12)))
    if k == 1: return "%.*f" % (R.randint(1, 6), R.uniform(-1000, 1000))
    if k == 2: return "%04d-%02d-%02d" % (R.randint(1900, 2100), R.randint(1, 12), R.randint(1, 28))
    if k == 3: return "%de-%d" % (R.randint(1, 9), R.randint(1, 12))
    if k == 4: return "+1 (%03d) %03d-%04d" % (R.randrange(1000), R.randrange(1000), R.randrange(10000))
    return "%d,%03d,%03d" % (R.randint(1, 999), R.randrange(1000), R.randrange(1000))
def english():
    out = []
    for _ in range(R.randint(2, 8)):
        ws = [word() for _ in range(R.randint(4, 20))]
        if R.random() < 0.3: ws.insert(R.randrange(len(ws)), number())
        if R.random() < 0.2: ws.insert(R.randrange(len(ws)), pick(["I'm", "you're", "they'll", "we've", "don't", "it's"]))
        s = " ".join(ws)
        out.append(s[0].upper() + s[1:] + pick([".", ".", ".", "!", "?", ";", "..."]))
    return " ".join(out)
def code():
    lines, ind = [], 0
    for _ in range(R.randint(4, 20)):
        a, b = pick(IDENT), pick(IDENT)
        k = R.randrange(6)
        if k == 0: s = "for (int %s = 0; %s < %s; %s++) {" % (a, a, b, a)
        elif k == 1: s = "%s[%s] += %s * %s;" % (a, b, pick(IDENT), number())
        elif k == 2: s = "def %s_%s(%s, %s=None):" % (a, b, a, b)
        elif k == 3: s = "return %s @ %s.T + %s  # %s" % (a, b, pick(IDENT), word())
        elif k == 4: s = "MPI_Allreduce(%s, %s, %d, MPI_FLOAT, MPI_SUM, comm);" % (a, b, R.randrange(4096))
        else: s = "if (%s != NULL && %s->%s > %d) return -1;" % (a, a, b, R.randrange(100))
        lines.append(pick(["    ", "\t", "  "]) * ind + s)
        if s.endswith("{") or s.endswith(":"): ind = min(ind + 1, 4)
        elif ind and R.random() < 0.3:
            ind -= 1
            if R.random() < 0.5: lines.append("    " * ind + "}")
    return pick(["\n", "\r\n"]).join(lines)
def chinese():
    s = "".join(pick(ZH) for _ in range(R.randint(10, 60)))
    i = R.randrange(len(s)); s = s[:i] + pick(["，", "、", "（", "“"]) + s[i:]
    if R.random() < 0.3: s += pick(["English", "GPU", "MPI", "DeepSeek"]) + "".join(pick(ZH) for _ in range(5))
    if R.random() < 0.3: s += number()
    return s + pick(["。", "！", "？"])
def japanese():
    return "".join(pick(ZH) if R.random() < 0.3 else pick(JA_KANA) for _ in range(R.randint(10, 50))) + "。"
def words(xs, lo, hi, end="."):
    return " ".join(pick(xs) for _ in range(R.randint(lo, hi))) + end
def korean():
    return " ".join("".join(pick(KO) for _ in range(R.randint(1, 5))) for _ in range(R.randint(4, 15))) + "."
def misc():
    k = R.randrange(5)
    if k == 0: return " ".join(pick(EMOJI) + pick(["", " ", word()]) for _ in range(R.randint(3, 12)))
    if k == 1: return "".join(chr(0xFF21 + R.randrange(26)) if R.random() < 0.8 else "\u3000" for _ in range(R.randint(5, 30)))
    if k == 2: return word() + " " * R.randint(2, 12) + word() + "\t" * R.randint(1, 3) + word() + " " * R.randint(1, 5)
    if k == 3: return "https://example.%s/%s/%s?q=%d&r=%s#%s" % (pick(["com", "org", "cn"]), word(), word(), R.randrange(999), word(), word())
    return " ".join(number() for _ in range(R.randint(3, 10)))
KINDS = [(english, 32), (code, 14), (chinese, 14), (japanese, 5), (korean, 4),
         (lambda: words(RU, 5, 25), 6), (lambda: words(AR, 4, 20), 3), (lambda: words(HI, 4, 20, "।"), 3),
         (lambda: words(EL, 4, 20), 2), (lambda: words(LAT, 4, 20), 5), (misc, 12)]
weights = [w for _, w in KINDS]

parts, size = [], 0
with open(golden, encoding="utf-8") as f:
    for line in f:
        t = json.loads(line)["text"] + "\n"
        parts.append(t); size += len(t.encode())
while size < target:
    fn = R.choices(KINDS, weights)[0][0]
    p = fn() + pick(["\n", "\n", "\n\n", "\r\n", " \n"])
    parts.append(p); size += len(p.encode())
with open(path, "w", encoding="utf-8", newline="") as f:
    f.write("".join(parts))
PY
bytes=$(wc -c <"$text")
sha=$( (sha256sum "$text" 2>/dev/null || shasum -a 256 "$text") | cut -d' ' -f1)
echo "text: $text, $bytes bytes, sha256 $sha"
echo "chunks: at most $chunk bytes, cut after the last newline in each"

# ---- 2. furrow ----
best=""
i=0
while [ $i -lt "$runs" ]; do
  line=$("$furrow" tokenize --tokenizer "$tokenizer" --file "$text" --chunk "$chunk" --bench)
  echo "  $line"
  mbs=$(echo "$line" | sed -n 's/.*: \([0-9.]*\) MB\/s.*/\1/p')
  best=$(printf '%s\n%s\n' "$best" "$mbs" | sort -g | tail -1)
  i=$((i + 1))
done
echo "furrow: $best MB/s (best of $runs, single thread)"

# ---- 3. Hugging Face tokenizers ----
if ! python3 -c 'import tokenizers' 2>/dev/null; then
  echo "tokenizers: not importable here (pip install tokenizers); skipped"
  exit 0
fi
"$furrow" tokenize --tokenizer "$tokenizer" --file "$text" --chunk "$chunk" >"$out/furrow-ids.json"
i=0
while [ $i -lt "$runs" ]; do
  RAYON_NUM_THREADS=1 RAYON_RS_NUM_CPUS=1 TOKENIZERS_PARALLELISM=false \
  python3 - "$tokenizer" "$text" "$chunk" "$out/furrow-ids.json" "$([ $i -eq 0 ] && echo compare)" <<'PY'
import json, sys, time
import tokenizers
from tokenizers import Tokenizer

tok_path, text_path, chunk, ids_path, compare = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
tk = Tokenizer.from_file(tok_path)
data = open(text_path, "rb").read()

def chunk_end(s, n, i, chunk):  # as furrow tokenize --chunk (runtime/cli/cmd_tokenize.c)
    if not chunk or n - i <= chunk: return n
    j = i + chunk
    k = s.rfind(b"\n", i, j)
    if k >= 0: return k + 1
    while j > i + 1 and (s[j] & 0xC0) == 0x80: j -= 1
    return j

pieces, i, n = [], 0, len(data)
while True:
    j = chunk_end(data, n, i, chunk)
    pieces.append(data[i:j].decode("utf-8"))
    if j == n: break
    i = j
t0 = time.perf_counter()
ids = []
for p in pieces:
    ids.extend(tk.encode(p, add_special_tokens=False).ids)
dt = time.perf_counter() - t0
print("  tokenizers %s: %d bytes -> %d tokens in %.3f s: %.2f MB/s" % (tokenizers.__version__, n, len(ids), dt, n / 1e6 / dt))
if compare:
    mine = json.load(open(ids_path))
    if mine == ids:
        print("  ids: identical (%d tokens)" % len(ids))
    else:
        k = next((x for x in range(min(len(mine), len(ids))) if mine[x] != ids[x]), min(len(mine), len(ids)))
        print("  ids: DIFFER (furrow %d tokens, tokenizers %d; first difference at token %d: %s vs %s)"
              % (len(mine), len(ids), k, mine[k:k + 5], ids[k:k + 5]))
PY
  i=$((i + 1))
done
