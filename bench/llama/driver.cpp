// llama-kvdriver: a llama.cpp engine serving many conversations at once, for tierd's
// llama harness (issue 15, bench/llama/run.sh). One process, one llama_context with a
// non-unified KV cache (kv_unified=false: every sequence slot owns its own stream, i.e.
// its own slice of every layer's K and V tensor), driven by a schedule file
// (bench/llama/schedule.py) of turns: "ARRIVAL_MS SESSION NEW_TOKENS OUTPUT_TOKENS".
//
// Serving loop (continuous batching, one llama_decode per step): turns arrive by their
// timestamps (times --time-scale); a session keeps its slot and KV between turns (its
// next turn only prefills the new tokens); a new session takes a free slot or evicts
// the least recently used idle one. Each step batches one decode token of every decoding
// turn and prefill chunks in the room left. Token ids are random (the weights are too).
//
// Prompt KV by transfer: under TCG, computing a prompt's KV would take the whole run, so
// a turn's prompt KV arrives as in Mooncake's disaggregated prefill, computed elsewhere
// and written into the sequence's slot: all but the last --prefill-tokens of it are
// copied from the warm state (llama_state_seq_set_data with the warm state cut to the
// sequence's new length, which rewrites the sequence's cells 0..L-1 in place), the last
// ones are computed by llama_decode.
//
// Ground truth, from llama.cpp's own layout: the K/V tensors ("cache_k_l<i>",
// "cache_v_l<i>", [row, kv_size, n_stream]) are found through the public eval callback
// on the first decode; with flash attention V is not transposed, so sequence s's first
// n cells of layer i are the bytes [base + s*nb[2], + n*nb[1]) of each tensor. Before
// every step the node of every page the step's attention reads is queried (move_pages
// with nodes=NULL), and the step adds, per sequence it runs, the bytes its attention
// reads (its cells in every layer's K and V) split by that placement:
// kv_fast_read_share = fast bytes / all bytes. pages_migrated is the guest's
// pgmigrate_success from the release (--go) to the end: the set-up move is not in it.
//
// Modes: --kv-node N moves all KV to node N once found (N=1: the "DRAM already full"
// start every mover arm shares; the accessed bits the set-up left are then cleared
// through /proc/self/clear_refs, so no sampler starts from them); --oracle-fast-mib M
// places the KV itself whenever the set of running turns changes (the slices of the
// running turns, then of the most recently idle sessions, up to M MiB on node 0, the
// rest on node 1); --hints sends tierd hints through libtierd (the same policy as
// clients/python/tierd/kvhints.py: register each layer's K and V, PREFETCH the
// sessions a turn is waiting for, ACCESS the running ones, COLD on idle, FREE on
// eviction). arm.sh protocol: --go FILE prints "ready pid=.. range=..", waits for FILE.
//
// Prints RESULT <tag>.<figure>=<value> lines (tokens_per_s, kv_fast_read_share,
// modelled_kv_ms_per_token, ...), and the age breakdown: per age of the cells read
// (time since the engine wrote them; age_0_0.5s, age_0.5_1s, age_1_2s, age_2_4s,
// age_ge4s) <bucket>_read_share, that bucket's share of all KV bytes read, and
// <bucket>_fast_share, the share of its bytes read from the fast node. Exit status 1
// on errors.

#include "ggml.h"
#include "llama.h"

#ifdef TIERD_HINTS
#include "tierd.h"
#endif

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <random>
#include <string>
#include <sys/syscall.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace {

constexpr long kMpolMfMove = 2; // MPOL_MF_MOVE (linux/mempolicy.h)
constexpr long kWarmSession = 1L << 40; // session ids of the warm start (schedules use >= 0)

struct Args {
    std::string model, schedule, tag = "llama", go, warm_state;
    double seconds = 60, time_scale = 1.0;
    // One thread: ggml's spin barrier wastes most of a second thread's time when the
    // two vCPUs are shared with a mover (or the host is busy), and the mover gets a CPU.
    int slots = 32, ctx_per_seq = 8192, threads = 1, chunk = 256, sample_ms = 1000;
    int prefill_tokens = 8;
    int kv_node = -1, warm_cells = 0;
    long oracle_fast_mib = -1;
    bool hints = false, warm_only = false;
};

[[noreturn]] void die(const std::string & msg) {
    fprintf(stderr, "llama-kvdriver: %s\n", msg.c_str());
    exit(1);
}

Args parse(int argc, char ** argv) {
    Args a;
    for (int i = 1; i < argc; i++) {
        std::string k = argv[i];
        auto val = [&]() -> std::string {
            if (i + 1 >= argc) die(k + " needs a value");
            return argv[++i];
        };
        if (k == "--model") a.model = val();
        else if (k == "--schedule") a.schedule = val();
        else if (k == "--tag") a.tag = val();
        else if (k == "--go") a.go = val();
        else if (k == "--seconds") a.seconds = atof(val().c_str());
        else if (k == "--time-scale") a.time_scale = atof(val().c_str());
        else if (k == "--slots") a.slots = atoi(val().c_str());
        else if (k == "--ctx-per-seq") a.ctx_per_seq = atoi(val().c_str());
        else if (k == "--threads") a.threads = atoi(val().c_str());
        else if (k == "--chunk") a.chunk = atoi(val().c_str());
        else if (k == "--sample-ms") a.sample_ms = atoi(val().c_str()); // unused: placement is queried per step
        else if (k == "--prefill-tokens") a.prefill_tokens = atoi(val().c_str());
        else if (k == "--kv-node") a.kv_node = atoi(val().c_str());
        else if (k == "--warm-cells") a.warm_cells = atoi(val().c_str());
        else if (k == "--oracle-fast-mib") a.oracle_fast_mib = atol(val().c_str());
        else if (k == "--warm-state") a.warm_state = val();
        else if (k == "--warm-only") a.warm_only = true;
        else if (k == "--hints") a.hints = true;
        else die("unknown argument " + k);
    }
    if (a.model.empty() || (a.schedule.empty() && !a.warm_only)) die("--model and --schedule are required");
    if (a.warm_only && (a.warm_state.empty() || a.warm_cells == 0)) die("--warm-only needs --warm-state and --warm-cells");
    if (a.slots < 1 || a.ctx_per_seq < 256 || a.chunk < 1 || a.seconds <= 0 || a.sample_ms < 1 ||
        a.warm_cells < 0 || a.warm_cells >= a.ctx_per_seq || a.threads < 1 || a.prefill_tokens < 1)
        die("bad sizes (slots >= 1, ctx-per-seq >= 256, chunk >= 1, seconds > 0, sample-ms >= 1, "
            "0 <= warm-cells < ctx-per-seq, threads >= 1, prefill-tokens >= 1)");
    return a;
}

double now_s() {
    using namespace std::chrono;
    static const auto t0 = steady_clock::now();
    return duration<double>(steady_clock::now() - t0).count();
}

// --- the KV layout, found by the eval callback ----------------------------------------

struct KvTensor {
    int layer = -1;
    bool is_v = false;
    uintptr_t base = 0;
    size_t bytes = 0, row_bytes = 0, stream_bytes = 0;
};

struct Layout {
    std::vector<KvTensor> tensors;
    bool done = false; // found: the callback stops looking
    bool has(uintptr_t base) const {
        for (auto & t : tensors)
            if (t.base == base) return true;
        return false;
    }
};

void note_tensor(Layout & l, const ggml_tensor * t) {
    if (!t || t->view_src || !t->data) return;
    int layer;
    char kv;
    if (sscanf(t->name, "cache_%c_l%d", &kv, &layer) != 2 || (kv != 'k' && kv != 'v')) return;
    auto base = reinterpret_cast<uintptr_t>(t->data);
    if (l.has(base)) return;
    l.tensors.push_back({layer, kv == 'v', base, ggml_nbytes(t), t->nb[1], t->nb[2]});
}

bool eval_cb(ggml_tensor * t, bool ask, void * ud) {
    auto * l = static_cast<Layout *>(ud);
    if (l->done) return false;
    for (int i = 0; i < GGML_MAX_SRC; i++) {
        const ggml_tensor * s = t->src[i];
        for (int d = 0; s && d < 4; d++, s = s->view_src) note_tensor(*l, s);
    }
    return !ask; // never ask for a node's data: the graph runs unsplit
}

// --- placement of the KV pages ---------------------------------------------------------

struct Placement {
    uintptr_t lo = 0, hi = 0; // page-aligned span of all KV tensors
    size_t page = 4096;
    std::vector<int8_t> node; // per page; negative: not populated / error

    void init(const Layout & l) {
        page = size_t(sysconf(_SC_PAGESIZE));
        lo = UINTPTR_MAX;
        for (auto & t : l.tensors) {
            lo = std::min(lo, t.base & ~(page - 1));
            hi = std::max(hi, (t.base + t.bytes + page - 1) & ~(page - 1));
        }
        node.assign((hi - lo) / page, -1);
    }
    // move_pages over pages [first, first+n): nodes == nullptr queries, else moves.
    long call(size_t first, size_t n, const int * nodes) {
        std::vector<void *> pages(n);
        std::vector<int> status(n, -1);
        for (size_t i = 0; i < n; i++) pages[i] = reinterpret_cast<void *>(lo + (first + i) * page);
        long rc = syscall(SYS_move_pages, 0, n, pages.data(), nodes, status.data(), nodes ? kMpolMfMove : 0);
        long moved = 0;
        for (size_t i = 0; i < n; i++) {
            if (nodes && status[i] >= 0 && node[first + i] != status[i]) moved++;
            node[first + i] = int8_t(status[i] >= 0 ? status[i] : -1);
        }
        return rc < 0 ? -1 : moved;
    }
    void refresh() {
        for (size_t f = 0; f < node.size(); f += 16384) call(f, std::min<size_t>(16384, node.size() - f), nullptr);
    }
    // Queries the node of every page of the ranges [a, b) (one move_pages per 16k pages).
    void query(const std::vector<std::pair<uintptr_t, uintptr_t>> & ranges) {
        std::vector<void *> pages;
        std::vector<size_t> idx;
        for (auto [a, b] : ranges)
            for (uintptr_t p = a & ~(page - 1); p < b; p += page) {
                pages.push_back(reinterpret_cast<void *>(p));
                idx.push_back((p - lo) / page);
            }
        std::vector<int> status(pages.size(), -1);
        for (size_t f = 0; f < pages.size(); f += 16384) {
            size_t n = std::min<size_t>(16384, pages.size() - f);
            if (syscall(SYS_move_pages, 0, n, pages.data() + f, nullptr, status.data() + f, 0) < 0)
                std::fill(status.begin() + long(f), status.begin() + long(f + n), -1);
        }
        for (size_t i = 0; i < idx.size(); i++) node[idx[i]] = int8_t(status[i] >= 0 ? status[i] : -1);
    }
    // Moves [a, b) to `to`; returns pages that changed node.
    long move(uintptr_t a, uintptr_t b, int to) {
        size_t first = (a - lo) / page, last = (b - lo + page - 1) / page;
        std::vector<size_t> idx;
        for (size_t p = first; p < last && p < node.size(); p++)
            if (node[p] != to) idx.push_back(p);
        long moved = 0;
        for (size_t i = 0; i < idx.size();) {
            size_t j = i; // runs of consecutive pages per call
            while (j + 1 < idx.size() && idx[j + 1] == idx[j] + 1 && j - i < 4095) j++;
            std::vector<int> nodes(j - i + 1, to);
            long m = call(idx[i], j - i + 1, nodes.data());
            if (m > 0) moved += m;
            i = j + 1;
        }
        return moved;
    }
    // Bytes of [a, b) on node 0 (fast) and elsewhere.
    void split(uintptr_t a, uintptr_t b, double & fast, double & slow) const {
        for (uintptr_t p = a & ~(page - 1); p < b; p += page) {
            uintptr_t s = std::max(p, a), e = std::min(p + page, b);
            int8_t n = node[(p - lo) / page];
            (n == 0 ? fast : slow) += double(e - s);
        }
    }
};

// --- reads by age of the KV read -------------------------------------------------------

// Attention's KV reads bucketed by the age of the cells read (wall time since the engine
// wrote them: a transfer, a prefill chunk or a decode step), with the bytes of each
// bucket that came from the fast node, as kvreplay's age_* figures (bench/src/kv/ages.rs,
// same bounds). Young KV read from the slow node means the mover was too slow to bring
// new KV in; old KV read from the slow node, that it demoted (or never promoted) KV in use.
struct ReadAges {
    static constexpr double kBounds[4] = {0.5, 1.0, 2.0, 4.0}; // s; the last bucket is older
    static constexpr int kBuckets = 5;
    double read[kBuckets] = {}, fast[kBuckets] = {};

    // Bucket of each cell [first cell, end cell) of one sequence read at `now`, given the
    // write times of its cells, which never decrease with the cell index (cells are
    // appended; a transfer or a kept history writes a prefix older than what follows).
    static void bounds(const std::vector<double> & written, int cells, double now, int (&start)[kBuckets + 1]) {
        start[0] = 0;
        start[kBuckets] = cells;
        // Bucket b (b < 4) holds ages in [kBounds[b-1], kBounds[b]): the cells written
        // after now - kBounds[b] and at or before now - kBounds[b-1]. Oldest first.
        for (int b = 1; b < kBuckets; b++) {
            double after = now - kBounds[kBuckets - 1 - b];
            start[b] = int(std::upper_bound(written.begin(), written.begin() + cells, after) - written.begin());
        }
    }
    static const char * label(int b) {
        static const char * l[kBuckets] = {"age_0_0.5s", "age_0.5_1s", "age_1_2s", "age_2_4s", "age_ge4s"};
        return l[b];
    }
};

// --- schedule and sessions ---------------------------------------------------------------

struct Turn {
    double arrival_ms;
    long session;
    int new_tokens, out_tokens;
    int history = 0; // tokens of earlier turns the session had before the schedule began
};

struct Slot {
    long session = -1;
    int cells = 0;           // KV cells in use (the sequence's length)
    double last_used = 0;    // s; LRU among idle sessions
    bool busy = false;       // a turn is running
    int todo_prefill = 0, todo_decode = 0;
    double last_access_hint = -1;
    std::vector<double> written; // s since the start, per cell: when it was last written
};

std::vector<Turn> load_schedule(const std::string & path) {
    std::ifstream in(path);
    if (!in) die("cannot read schedule " + path);
    std::vector<Turn> v;
    std::string line;
    while (std::getline(in, line)) {
        if (line.empty() || line[0] == '#') continue;
        Turn t;
        int n = sscanf(line.c_str(), "%lf %ld %d %d %d", &t.arrival_ms, &t.session, &t.new_tokens, &t.out_tokens,
                       &t.history);
        if (n < 4 || t.session < 0 || t.new_tokens < 0 || t.out_tokens < 0 || t.history < 0)
            die("schedule " + path + ": bad line '" + line + "'");
        v.push_back(t);
    }
    if (v.empty()) die("schedule " + path + " is empty");
    return v;
}

// HMAT read figures of node n from initiator node 0 (sysfs access0), or 0.
double hmat(int n, const char * what) {
    char p[160];
    snprintf(p, sizeof p, "/sys/devices/system/node/node%d/access0/initiators/%s", n, what);
    FILE * f = fopen(p, "r");
    double v = 0;
    if (f) {
        if (fscanf(f, "%lf", &v) != 1) v = 0;
        fclose(f);
    }
    return v;
}

// The guest's pgmigrate_success (/proc/vmstat), or -1.
long pgmigrate_success() {
    FILE * f = fopen("/proc/vmstat", "r");
    if (!f) return -1;
    char key[64];
    long v, r = -1;
    while (fscanf(f, "%63s %ld", key, &v) == 2)
        if (strcmp(key, "pgmigrate_success") == 0) r = v;
    fclose(f);
    return r;
}

// A saved sequence state (llama_state_seq_get_data of llama.cpp's non-unified KV cache:
// magic, seq id, n_stream, then per stream its cell count; for the one stream with cells,
// per cell (pos, n_seq_id = 1, seq id), v_trans, n_layer, per layer K (type, row size,
// rows), per layer V (the same)) cut to its first `n` cells: the prompt KV a transfer
// writes. Dies when the layout is not that one.
struct WarmState {
    std::vector<uint8_t> blob;
    uint32_t cells = 0;
    size_t meta_off = 16;
    std::vector<size_t> row; // per K then V tensor: row bytes

    template <class T> T get(size_t off) const {
        if (off + sizeof(T) > blob.size()) die("warm state: truncated");
        T v;
        memcpy(&v, blob.data() + off, sizeof v);
        return v;
    }
    void parse() {
        uint32_t n_stream = get<uint32_t>(8);
        cells = get<uint32_t>(12);
        if (n_stream < 1 || cells == 0 || get<uint32_t>(meta_off + 4) != 1) die("warm state: unexpected layout");
        size_t off = meta_off + size_t(cells) * 12;
        if (get<uint32_t>(off) != 0) die("warm state: V is transposed (flash attention off?)");
        uint32_t n_layer = get<uint32_t>(off + 4);
        off += 8;
        for (uint32_t t = 0; t < 2 * n_layer; t++) {
            size_t r = size_t(get<uint64_t>(off + 4));
            row.push_back(r);
            off += 12 + size_t(cells) * r;
        }
        if (off + 4 * size_t(n_stream - 1) != blob.size()) die("warm state: unexpected size");
    }
    // The state of the first n cells (n <= cells) into out.
    void prefix(uint32_t n, std::vector<uint8_t> & out) const {
        auto put = [&](size_t from, size_t len) { out.insert(out.end(), blob.begin() + long(from), blob.begin() + long(from + len)); };
        out.clear();
        put(0, 12);
        out.insert(out.end(), reinterpret_cast<const uint8_t *>(&n), reinterpret_cast<const uint8_t *>(&n) + 4);
        put(meta_off, size_t(n) * 12);
        size_t off = meta_off + size_t(cells) * 12;
        put(off, 8);
        off += 8;
        for (size_t r : row) {
            put(off, 12 + size_t(n) * r);
            off += 12 + size_t(cells) * r;
        }
        put(off, blob.size() - off);
    }
};

// --- tierd hints (same policy as clients/python/tierd/kvhints.py) -----------------------

struct Hints {
#ifdef TIERD_HINTS
    tierd_client * c = nullptr;
    struct Region { uint32_t id; uintptr_t base; size_t len; };
    std::vector<Region> regions; // per KV tensor, same order as Layout::tensors
    static constexpr size_t kBlock = 64 << 10;
    long sent = 0, failed = 0;

    void open(const Layout & l) {
        c = tierd_connect(nullptr);
        if (!c) die(std::string("--hints: tierd_connect: ") + strerror(errno));
        for (auto & t : l.tensors) {
            // Registered ranges are whole blocks inside the tensor (its base is only
            // 64-byte aligned); the few edge bytes are left to sampling.
            uintptr_t b = (t.base + kBlock - 1) & ~(kBlock - 1);
            size_t len = ((t.base + t.bytes) & ~(kBlock - 1)) - b;
            uint32_t id = 0;
            int rc = tierd_register(c, reinterpret_cast<void *>(b), len, kBlock, &id);
            if (rc < 0) die("--hints: tierd_register: " + std::string(strerror(-rc)));
            regions.push_back({id, b, len});
        }
    }
    void slot(const Layout & l, int s, int cells, int kind, uint32_t deadline_ms = 0) {
        if (!c || cells <= 0) return;
        for (size_t i = 0; i < l.tensors.size(); i++) {
            auto & t = l.tensors[i];
            auto & r = regions[i];
            uintptr_t a = t.base + size_t(s) * t.stream_bytes, e = a + size_t(cells) * t.row_bytes;
            a = std::max(a, r.base);
            e = std::min(e, r.base + r.len);
            if (e <= a) continue;
            uint64_t first = (a - r.base) / kBlock, last = (e - 1 - r.base) / kBlock;
            int rc = tierd_hint_range(c, r.id, kind, first, uint32_t(last - first + 1), deadline_ms);
            rc < 0 ? failed++ : sent++;
        }
    }
#else
    long sent = 0, failed = 0;
    void open(const Layout &) { die("--hints: built without libtierd (TIERD_HINTS)"); }
    void slot(const Layout &, int, int, int, uint32_t = 0) {}
#endif
};

#ifndef TIERD_HINTS
constexpr int TIERD_HINT_ACCESS = 1, TIERD_HINT_PREFETCH = 2, TIERD_HINT_COLD = 3, TIERD_HINT_FREE = 4;
#endif

} // namespace

int main(int argc, char ** argv) {
    Args a = parse(argc, argv);
    std::vector<Turn> turns;
    if (!a.warm_only) turns = load_schedule(a.schedule);
    std::mt19937 rng(15);

    llama_log_set([](ggml_log_level lvl, const char * text, void *) {
        if (lvl >= GGML_LOG_LEVEL_WARN) fputs(text, stderr);
    }, nullptr);
    llama_backend_init();
    auto mp = llama_model_default_params();
    mp.load_mode = LLAMA_LOAD_MODE_NONE; // weights read into anonymous memory, like the KV
    llama_model * model = llama_model_load_from_file(a.model.c_str(), mp);
    if (!model) die("cannot load model " + a.model);
    const int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));

    Layout layout;
    auto cp = llama_context_default_params();
    cp.n_ctx = uint32_t(a.slots) * uint32_t(a.ctx_per_seq);
    cp.n_seq_max = uint32_t(a.slots);
    cp.n_batch = cp.n_ubatch = 512;
    cp.n_threads = cp.n_threads_batch = a.threads;
    cp.kv_unified = false;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_ENABLED; // V not transposed: a cell is one row
    cp.cb_eval = eval_cb;
    cp.cb_eval_user_data = &layout;
    cp.no_perf = true;
    llama_context * ctx = llama_init_from_model(model, cp);
    if (!ctx) die("cannot create the context (slots " + std::to_string(a.slots) + ")");
    llama_memory_t mem = llama_get_memory(ctx);

    // One token on sequence 0 builds the graph, so the callback sees the KV tensors.
    {
        llama_token tok = 1;
        llama_batch b = llama_batch_get_one(&tok, 1);
        if (llama_decode(ctx, b) != 0) die("warm-up decode failed");
        llama_memory_seq_rm(mem, 0, -1, -1);
    }
    if (layout.tensors.size() < 2) die("KV tensors not found through the eval callback");
    layout.done = true;
    std::sort(layout.tensors.begin(), layout.tensors.end(), [](auto & x, auto & y) {
        return x.layer != y.layer ? x.layer < y.layer : x.is_v < y.is_v;
    });
    // Warm start: every slot holds an idle session of --warm-cells cells, as on a server
    // that has been up for a while. The KV of one such session is computed once (on the
    // host by build.sh: --warm-only) and saved with llama_state_seq_get_data; a run
    // loads it into every slot (llama_state_seq_set_data: a copy, seconds under TCG
    // where computing 7k tokens takes minutes).
    std::vector<Slot> slots(a.slots);
    for (auto & sl : slots) sl.written.assign(size_t(a.ctx_per_seq), -1e9); // the warm start: long ago
    WarmState warm; // the prompt KV of transfers (empty without a warm start)
    if (a.warm_cells > 0) {
        std::vector<uint8_t> & state = warm.blob;
        if (!a.warm_state.empty() && !a.warm_only) {
            std::ifstream f(a.warm_state, std::ios::binary);
            if (!f) die("cannot read --warm-state " + a.warm_state + " (bench/llama/build.sh makes it)");
            state.assign(std::istreambuf_iterator<char>(f), {});
        } else {
            llama_batch wb = llama_batch_init(512, 0, 1);
            for (int done = 0; done < a.warm_cells;) {
                int n = std::min(512, a.warm_cells - done);
                wb.n_tokens = n;
                for (int i = 0; i < n; i++) {
                    wb.token[i] = llama_token(rng() % uint32_t(n_vocab));
                    wb.pos[i] = done + i;
                    wb.n_seq_id[i] = 1;
                    wb.seq_id[i][0] = 0;
                    wb.logits[i] = i == n - 1;
                }
                if (llama_decode(ctx, wb) != 0) die("warm-start decode failed");
                done += n;
            }
            llama_batch_free(wb);
            state.resize(llama_state_seq_get_size(ctx, 0));
            if (llama_state_seq_get_data(ctx, state.data(), state.size(), 0) != state.size())
                die("llama_state_seq_get_data failed");
            if (a.warm_only) {
                std::ofstream f(a.warm_state + ".tmp", std::ios::binary);
                f.write(reinterpret_cast<const char *>(state.data()), std::streamsize(state.size()));
                if (!f.flush() || rename((a.warm_state + ".tmp").c_str(), a.warm_state.c_str()) != 0)
                    die("cannot write " + a.warm_state);
                printf("warm state: %zu bytes, %d cells -> %s\n", state.size(), a.warm_cells, a.warm_state.c_str());
                return 0;
            }
        }
        for (int s = 0; s < a.slots; s++) {
            if (llama_state_seq_set_data(ctx, state.data(), state.size(), s) == 0)
                die("llama_state_seq_set_data: the warm state does not fit slot " + std::to_string(s));
            slots[s].session = kWarmSession + s;
            slots[s].cells = a.warm_cells;
            slots[s].last_used = -1.0 - s;
        }
        warm.parse();
        if (warm.cells != uint32_t(a.warm_cells)) die("--warm-state holds " + std::to_string(warm.cells) + " cells, not --warm-cells");
    }
    size_t kv_bytes = 0;
    for (auto & t : layout.tensors) kv_bytes += t.bytes;
    Placement pl;
    pl.init(layout);
    pl.refresh();
    if (a.kv_node >= 0) pl.move(pl.lo, pl.hi, a.kv_node);
    {
        // The set-up wrote every KV page (and moving them may keep their young bits):
        // clear the accessed bits, so the samplers start from the run, not the set-up.
        FILE * f = fopen("/proc/self/clear_refs", "w");
        if (f) {
            fputs("1", f);
            fclose(f);
        }
    }
    Hints hints;

    fprintf(stderr, "llama-kvdriver: %zu KV tensors, %.1f MiB (%d slots x %d cells), row %zu B, stream %zu B\n",
            layout.tensors.size(), kv_bytes / 1048576.0, a.slots, a.ctx_per_seq, layout.tensors[0].row_bytes,
            layout.tensors[0].stream_bytes);
    printf("ready pid=%d range=%#" PRIxPTR "-%#" PRIxPTR " kv_mib=%.0f slots=%d turns=%zu\n", getpid(), pl.lo, pl.hi,
           kv_bytes / 1048576.0, a.slots, turns.size());
    fflush(stdout);
    if (!a.go.empty())
        while (access(a.go.c_str(), F_OK) != 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    // After the release: the arm starts tierd (mover.sh) once this process is ready.
    if (a.hints) hints.open(layout);

    std::deque<size_t> waiting; // turns that arrived, not yet running
    size_t next_turn = 0;
    llama_batch batch = llama_batch_init(512, 0, 1);
    double fast_b = 0, slow_b = 0, prefill_tokens = 0, decode_tokens = 0, evictions = 0, steps = 0;
    double turns_done = 0, oracle_moved = 0, transfer_tokens = 0, decode_steps = 0, max_running = 0;
    double running_sum = 0;
    ReadAges ages;
    std::vector<uint8_t> transfer; // a cut warm state, reused
    const long migrated0 = pgmigrate_success();
    const double t_start = now_s();
    bool oracle_due = a.oracle_fast_mib >= 0;
    std::vector<size_t> running_turn(a.slots, SIZE_MAX);

    auto slot_range = [&](const KvTensor & t, int s, int cells) {
        uintptr_t b = t.base + size_t(s) * t.stream_bytes;
        return std::make_pair(b, b + size_t(cells) * t.row_bytes);
    };
    auto place_oracle = [&]() {
        // Active slices first, then idle sessions newest first, up to the budget on node 0.
        std::vector<int> order(a.slots);
        for (int i = 0; i < a.slots; i++) order[i] = i;
        std::sort(order.begin(), order.end(), [&](int x, int y) {
            if (slots[x].busy != slots[y].busy) return slots[x].busy;
            return slots[x].last_used > slots[y].last_used;
        });
        // pl.node is current without a query: no other mover runs in this arm, every
        // move goes through pl.move, and each step queries the pages it reads.
        double budget = double(a.oracle_fast_mib) * 1048576.0;
        for (int pass = 0; pass < 2; pass++) // demote first, so promotion finds room
            for (int s : order) {
                if (slots[s].session < 0 || slots[s].cells == 0) continue;
                double need = 0;
                for (auto & t : layout.tensors) need += double(slots[s].cells) * double(t.row_bytes);
                bool fast = need <= budget;
                if (pass == 1 && fast) budget -= need;
                if ((pass == 0) == fast) continue;
                for (auto & t : layout.tensors) {
                    auto r = slot_range(t, s, slots[s].cells);
                    oracle_moved += double(pl.move(r.first, r.second, fast ? 0 : 1));
                }
            }
    };

    while (now_s() - t_start < a.seconds) {
        double t = now_s() - t_start;
        while (next_turn < turns.size() && turns[next_turn].arrival_ms * a.time_scale <= t * 1000.0)
            waiting.push_back(next_turn++);
        if (next_turn >= turns.size() && waiting.empty() &&
            std::none_of(slots.begin(), slots.end(), [](auto & s) { return s.busy; }))
            break;

        // Admit waiting turns: into their session's slot, a free slot, or the LRU idle one.
        for (size_t w = 0; w < waiting.size();) {
            const Turn & tu = turns[waiting[w]];
            int s = -1;
            for (int i = 0; i < a.slots; i++)
                if (slots[i].session == tu.session) s = i;
            if (s >= 0 && slots[s].busy) { w++; continue; } // its previous turn still runs
            if (s < 0) {
                for (int i = 0; i < a.slots && s < 0; i++)
                    if (slots[i].session < 0) s = i;
                if (s < 0) {
                    double oldest = 1e300;
                    for (int i = 0; i < a.slots; i++)
                        if (!slots[i].busy && slots[i].last_used < oldest) oldest = slots[i].last_used, s = i;
                    if (s < 0) break; // every slot busy: wait
                    evictions++;
                    // A session the trace shows with earlier turns (before the schedule
                    // began) gets the evicted slot's KV as its history: its first turn
                    // here then reads that much context, as a returning user's would.
                    int keep = std::min(tu.history, slots[s].cells);
                    if (keep == 0) hints.slot(layout, s, slots[s].cells, TIERD_HINT_FREE);
                    llama_memory_seq_rm(mem, s, keep, -1);
                    std::vector<double> written = std::move(slots[s].written); // the kept history's times stay
                    slots[s] = Slot();
                    slots[s].cells = keep;
                    slots[s].written = std::move(written);
                }
                slots[s].session = tu.session;
            }
            Slot & sl = slots[s];
            if (sl.cells + tu.new_tokens + tu.out_tokens > a.ctx_per_seq) { // too long: start over
                hints.slot(layout, s, sl.cells, TIERD_HINT_FREE);
                llama_memory_seq_rm(mem, s, -1, -1);
                sl.cells = 0;
            }
            int new_tokens = std::min(tu.new_tokens, a.ctx_per_seq - sl.cells - 1);
            // The prompt's KV by transfer, up to the warm state's length; the last
            // --prefill-tokens (and what the warm state cannot give) are computed.
            int to = std::min(sl.cells + std::max(0, new_tokens - a.prefill_tokens), int(warm.cells));
            // PREFETCH every cell the turn will use: its history, its prompt and its
            // output budget (the request's max tokens), so the pages its decode steps
            // write are fast before they are written.
            int reach = std::min(a.ctx_per_seq, sl.cells + new_tokens + std::max(1, tu.out_tokens));
            hints.slot(layout, s, std::max(reach, to), TIERD_HINT_PREFETCH, 100);
            if (to > sl.cells) {
                warm.prefix(uint32_t(to), transfer);
                if (llama_state_seq_set_data(ctx, transfer.data(), transfer.size(), s) == 0)
                    die("llama_state_seq_set_data: a transfer of " + std::to_string(to) + " cells failed");
                if (llama_memory_seq_pos_max(mem, s) != to - 1) die("a transfer left the sequence at the wrong length");
                new_tokens -= to - sl.cells;
                transfer_tokens += to - sl.cells;
                std::fill(sl.written.begin() + sl.cells, sl.written.begin() + to, now_s() - t_start);
                sl.cells = to;
            }
            sl.busy = true;
            sl.todo_prefill = new_tokens;
            sl.todo_decode = std::max(1, std::min(tu.out_tokens, a.ctx_per_seq - sl.cells - sl.todo_prefill));
            running_turn[s] = waiting[w];
            waiting.erase(waiting.begin() + long(w));
            oracle_due = a.oracle_fast_mib >= 0;
        }

        if (oracle_due) { // the set of running turns changed
            place_oracle();
            oracle_due = false;
        }

        // One step: one token of every decoding turn first, then prefill chunks in the
        // room left (a long prompt never holds back the others' next token).
        batch.n_tokens = 0;
        std::vector<std::pair<int, int>> ran; // slot, tokens added
        for (int pass = 0; pass < 2; pass++)
            for (int s = 0; s < a.slots; s++) {
                Slot & sl = slots[s];
                if (!sl.busy || (pass == 0) != (sl.todo_prefill <= 0)) continue;
                int room = 512 - batch.n_tokens;
                if (room <= 0) break;
                int n = sl.todo_prefill > 0 ? std::min({sl.todo_prefill, a.chunk, room}) : 1;
                for (int k = 0; k < n; k++) {
                    int i = batch.n_tokens++;
                    batch.token[i] = llama_token(rng() % uint32_t(n_vocab));
                    batch.pos[i] = sl.cells + k;
                    batch.n_seq_id[i] = 1;
                    batch.seq_id[i][0] = s;
                    batch.logits[i] = k == n - 1 && sl.todo_prefill <= n;
                }
                ran.push_back({s, n});
            }
        if (ran.empty()) { // idle until the next arrival
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
            continue;
        }
        // Where the pages this step's attention reads are now (each sequence's cells,
        // the new ones included), exactly, not from a sample up to a second old.
        std::vector<std::pair<uintptr_t, uintptr_t>> reads;
        bool decoding = false;
        for (auto [s, n] : ran) {
            for (auto & t : layout.tensors) reads.push_back(slot_range(t, s, slots[s].cells + n));
            decoding = decoding || slots[s].todo_prefill <= 0;
        }
        pl.query(reads);
        running_sum += double(ran.size());
        max_running = std::max(max_running, double(ran.size()));
        if (decoding) decode_steps++;
        int rc = llama_decode(ctx, batch);
        if (rc != 0) die("llama_decode returned " + std::to_string(rc));
        steps++;
        double tnow = now_s() - t_start;
        for (auto [s, n] : ran) {
            Slot & sl = slots[s];
            std::fill(sl.written.begin() + sl.cells, sl.written.begin() + sl.cells + n, tnow);
            sl.cells += n;
            sl.last_used = tnow;
            // What attention read for this sequence: all its cells, every layer, K and V,
            // split by placement and, per age bucket of the cells, into ages.
            int start[ReadAges::kBuckets + 1];
            ReadAges::bounds(sl.written, sl.cells, tnow, start);
            for (auto & t : layout.tensors) {
                auto r = slot_range(t, s, sl.cells);
                pl.split(r.first, r.second, fast_b, slow_b);
                for (int o = 0; o < ReadAges::kBuckets; o++) {
                    if (start[o + 1] <= start[o]) continue;
                    double f = 0, sw = 0;
                    pl.split(r.first + size_t(start[o]) * t.row_bytes, r.first + size_t(start[o + 1]) * t.row_bytes, f, sw);
                    int b = ReadAges::kBuckets - 1 - o; // youngest first
                    ages.read[b] += f + sw;
                    ages.fast[b] += f;
                }
            }
            if (sl.todo_prefill > 0) {
                sl.todo_prefill -= n;
                prefill_tokens += n;
            } else {
                sl.todo_decode--;
                decode_tokens++;
            }
            if (tnow - sl.last_access_hint >= 0.2) {
                hints.slot(layout, s, sl.cells, TIERD_HINT_ACCESS);
                sl.last_access_hint = tnow;
            }
            if (sl.todo_prefill <= 0 && sl.todo_decode <= 0) { // turn done: the session idles
                sl.busy = false;
                turns_done++;
                running_turn[s] = SIZE_MAX;
                hints.slot(layout, s, sl.cells, TIERD_HINT_COLD);
                oracle_due = a.oracle_fast_mib >= 0;
            }
        }
    }
    double wall = now_s() - t_start;
    const long migrated1 = pgmigrate_success();
    double live = 0;
    for (auto & sl : slots) live += double(sl.cells) * double(layout.tensors[0].row_bytes) * double(layout.tensors.size());
    double share = fast_b + slow_b > 0 ? fast_b / (fast_b + slow_b) : 0;
    // Modelled KV read time on a real two-tier machine: the bytes each node served at that
    // node's HMAT read bandwidth (MB/s in sysfs), plus one read latency per step and node.
    double bw0 = hmat(0, "read_bandwidth"), bw1 = hmat(1, "read_bandwidth");
    double lat0 = hmat(0, "read_latency"), lat1 = hmat(1, "read_latency");
    const char * p = a.tag.c_str();
    printf("RESULT %s.tokens_per_s=%.2f\n", p, decode_tokens / wall);
    printf("RESULT %s.prefill_tokens_per_s=%.2f\n", p, prefill_tokens / wall);
    printf("RESULT %s.kv_fast_read_share=%.4f\n", p, share);
    printf("RESULT %s.kv_read_gib=%.3f\n", p, (fast_b + slow_b) / 1073741824.0);
    printf("RESULT %s.kv_mib=%.1f\n", p, kv_bytes / 1048576.0);
    printf("RESULT %s.live_kv_mib=%.1f\n", p, live / 1048576.0);
    printf("RESULT %s.steps=%.0f\n", p, steps);
    printf("RESULT %s.turns_done=%.0f\n", p, turns_done);
    printf("RESULT %s.turns_arrived=%zu\n", p, next_turn);
    printf("RESULT %s.evictions=%.0f\n", p, evictions);
    printf("RESULT %s.wall_s=%.1f\n", p, wall);
    printf("RESULT %s.decode_steps=%.0f\n", p, decode_steps);
    printf("RESULT %s.mean_running=%.2f\n", p, steps > 0 ? running_sum / steps : 0.0);
    printf("RESULT %s.max_running=%.0f\n", p, max_running);
    printf("RESULT %s.transfer_tokens=%.0f\n", p, transfer_tokens);
    for (int b = 0; b < ReadAges::kBuckets; b++) {
        // Per age bucket: its share of all KV bytes read, and the share of its bytes read
        // from the fast node (0 when the bucket is empty).
        printf("RESULT %s.%s_read_share=%.4f\n", p, ReadAges::label(b), fast_b + slow_b > 0 ? ages.read[b] / (fast_b + slow_b) : 0.0);
        printf("RESULT %s.%s_fast_share=%.4f\n", p, ReadAges::label(b), ages.read[b] > 0 ? ages.fast[b] / ages.read[b] : 0.0);
    }
    if (migrated0 >= 0 && migrated1 >= 0) printf("RESULT %s.pages_migrated=%ld\n", p, migrated1 - migrated0);
    if (a.oracle_fast_mib >= 0) printf("RESULT %s.oracle_pages_moved=%.0f\n", p, oracle_moved);
    if (a.hints) printf("RESULT %s.hints_sent=%ld\nRESULT %s.hints_failed=%ld\n", p, hints.sent, p, hints.failed);
    if (bw0 > 0 && bw1 > 0 && decode_tokens > 0) {
        double ms = (fast_b / (bw0 * 1e6) + slow_b / (bw1 * 1e6) + steps * (lat0 + lat1) * 1e-9) * 1e3;
        printf("RESULT %s.modelled_kv_ms_per_token=%.4f\n", p, ms / (decode_tokens + prefill_tokens));
    }
    llama_batch_free(batch);
    llama_free(ctx);
    llama_model_free(model);
    return 0;
}
