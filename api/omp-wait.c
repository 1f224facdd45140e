/* omp-wait.c - the re-exec with OMP_WAIT_POLICY=passive (omp-wait.h). */
#include "omp-wait.h"

#include <stdlib.h>
#include <unistd.h>

void api_omp_passive(char **argv) {
  if (getenv("OMP_WAIT_POLICY") || !argv || !argv[0]) return;
  if (setenv("OMP_WAIT_POLICY", "passive", 1) != 0) return;
  execv("/proc/self/exe", argv);
  /* only on failure: the variable stays set, for the programs this one starts */
}
