// A process-wide pool of persistent worker threads. The calling (JavaScript) thread
// always takes part, so `threads()` counts it: with 2 threads there is one worker.
// Workers spin for a short while after each job (a spinning worker starts in ~0.2 µs,
// a sleeping one in ~50 µs, PERF.md), then sleep on a condition variable.
#pragma once
#include <cstddef>

namespace act {

// Runs piece `piece` of a job on participant `who` (0 = the caller, 1.. = workers).
using Piece = void (*)(void* ctx, size_t piece, int who);

// CPUs this process may run on (affinity mask), at least 1.
int availableCores();

class Pool {
 public:
  static Pool& get();

  int threads() const;
  // Sets the participants (caller included), clamped to [1, availableCores()]; returns it.
  int setThreads(int n);

  // Runs pieces [0, n) on whichever participants are free: the caller starts at once, a
  // worker joins when it wakes, and a worker that wakes after the caller has finished
  // every piece stays out (so a sleeping worker never delays a short job).
  void run(size_t n, Piece fn, void* ctx);
  // Runs piece p on participant p for every p in [0, threads()) (e.g. one half each).
  void runEach(Piece fn, void* ctx);

 private:
  Pool();
  struct State;
  State* s_;
};

}  // namespace act
