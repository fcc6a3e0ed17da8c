#include "pool.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <system_error>
#include <thread>

#if defined(__linux__)
#include <pthread.h>
#include <sched.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace act {

namespace {

// How long an idle worker spins before sleeping. Decode calls come every few tens of
// µs; a pause longer than this is long enough that a ~50 µs wake-up does not matter.
constexpr auto kSpin = std::chrono::microseconds(200);
constexpr uint64_t kClosed = uint64_t{1} << 31;
constexpr uint64_t kCountMask = kClosed - 1;

inline void cpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

}  // namespace

int availableCores() {
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
#endif
  const unsigned n = std::thread::hardware_concurrency();
  return n > 0 ? static_cast<int>(n) : 1;
}

// One job at a time. `ticket` packs (job id << 32) | closed bit | workers that joined: a
// worker joins with a CAS only while the id matches and the job is open, so the caller
// knows exactly whom to wait for once it closes the job.
struct Pool::State {
  std::atomic<int> threads{1};
  int workers = 0;  // started, detached: the pool lives as long as the process

  Piece fn = nullptr;
  void* ctx = nullptr;
  size_t pieces = 0;
  bool each = false;
  std::atomic<int> participants{1};  // read by workers before they join
  std::atomic<size_t> next{0};
  std::atomic<uint64_t> ticket{0};
  std::atomic<uint32_t> posted{0};
  std::atomic<uint32_t> finished{0};
  uint32_t lastId = 0;

  std::mutex sleepMutex;
  std::condition_variable wake;
  std::atomic<int> sleepers{0};

  void workerLoop(int who);
  uint32_t waitForJob(uint32_t seen);
  void post(Piece f, void* c, size_t n, bool eachMode);
  void runPieces(int who);
};

uint32_t Pool::State::waitForJob(uint32_t seen) {
  const auto until = std::chrono::steady_clock::now() + kSpin;
  for (unsigned i = 1;; i++) {
    const uint32_t id = posted.load(std::memory_order_acquire);
    if (id != seen) return id;
    cpuRelax();
    if ((i & 255) == 0 && std::chrono::steady_clock::now() > until) break;
  }
  // Sleep. sleepers (seq_cst) before re-reading posted pairs with post(): either the
  // caller sees a sleeper and notifies under the mutex, or this thread sees the new id.
  std::unique_lock<std::mutex> lock(sleepMutex);
  sleepers.fetch_add(1);
  while (posted.load() == seen) wake.wait(lock);
  sleepers.fetch_sub(1);
  return posted.load();
}

void Pool::State::runPieces(int who) {
  if (each) {
    fn(ctx, static_cast<size_t>(who), who);
    return;
  }
  for (size_t i; (i = next.fetch_add(1, std::memory_order_relaxed)) < pieces;) fn(ctx, i, who);
}

void Pool::State::workerLoop(int who) {
#if defined(__linux__)
  pthread_setname_np(pthread_self(), "actsparse-pool");  // visible in top -H, perf
#endif
  uint32_t seen = 0;
  for (;;) {
    const uint32_t id = waitForJob(seen);
    seen = id;
    uint64_t t = ticket.load(std::memory_order_acquire);
    bool joined = false;
    while ((t >> 32) == id && !(t & kClosed) && who < participants.load()) {
      if (ticket.compare_exchange_weak(t, t + 1, std::memory_order_acq_rel)) {
        joined = true;
        break;
      }
    }
    if (!joined) continue;
    runPieces(who);
    finished.fetch_add(1, std::memory_order_release);
  }
}

void Pool::State::post(Piece f, void* c, size_t n, bool eachMode) {
  fn = f;
  ctx = c;
  pieces = n;
  each = eachMode;
  participants.store(threads.load(std::memory_order_relaxed), std::memory_order_relaxed);
  next.store(0, std::memory_order_relaxed);
  finished.store(0, std::memory_order_relaxed);
  const uint32_t id = ++lastId == 0 ? ++lastId : lastId;
  ticket.store(static_cast<uint64_t>(id) << 32, std::memory_order_release);
  posted.store(id);
  if (sleepers.load() > 0) {
    std::lock_guard<std::mutex> lock(sleepMutex);
    wake.notify_all();
  }
}

Pool::Pool() : s_(new State) {}

Pool& Pool::get() {
  // Leaked on purpose: worker threads are never joined, so no destructor may run at exit.
  static Pool* pool = new Pool;
  return *pool;
}

int Pool::threads() const { return s_->threads.load(); }

int Pool::setThreads(int n) {
  const int cores = availableCores();
  n = n < 1 ? 1 : (n > cores ? cores : n);
  // Workers are started once and kept; lowering the count leaves the extra ones asleep.
  while (s_->workers < n - 1) {
    const int who = s_->workers + 1;
    try {
      std::thread([this, who] { s_->workerLoop(who); }).detach();
    } catch (const std::system_error&) {
      break;  // the system refuses more threads: use those there are
    }
    s_->workers = who;
  }
  n = n < s_->workers + 1 ? n : s_->workers + 1;
  s_->threads.store(n);
  return n;
}

void Pool::run(size_t n, Piece fn, void* ctx) {
  State& s = *s_;
  if (s.threads.load() <= 1 || n <= 1) {
    for (size_t i = 0; i < n; i++) fn(ctx, i, 0);
    return;
  }
  s.post(fn, ctx, n, false);
  s.runPieces(0);
  // Close the job; wait only for the workers that joined before the close.
  const uint64_t t = s.ticket.fetch_or(kClosed, std::memory_order_acq_rel);
  const uint32_t joined = static_cast<uint32_t>(t & kCountMask);
  while (s.finished.load(std::memory_order_acquire) < joined) cpuRelax();
}

void Pool::runEach(Piece fn, void* ctx) {
  State& s = *s_;
  const int n = s.threads.load();
  if (n <= 1) {
    fn(ctx, 0, 0);
    return;
  }
  s.post(fn, ctx, static_cast<size_t>(n), true);
  s.runPieces(0);
  // Every worker below `participants` must run its piece: wait for all of them.
  while (s.finished.load(std::memory_order_acquire) < static_cast<uint32_t>(n - 1)) cpuRelax();
  s.ticket.fetch_or(kClosed, std::memory_order_acq_rel);
}

}  // namespace act
