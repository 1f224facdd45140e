/* omp-wait.h - idle OpenMP threads that sleep instead of spinning, for ecsnet-server and ecsnet.
 *
 * Debian's oneDNN runs on GNU OpenMP (libgomp), whose threads spin between parallel regions by
 * default. Beside another busy process that spinning takes the cores the team waits for
 * (design.md: thread pools), so the programs run with OMP_WAIT_POLICY=passive. libgomp reads the
 * variable once, when it loads, before main: setting it in main is too late. So
 * api_omp_passive, called first thing in main, re-executes the program once (execv of
 * /proc/self/exe: the same process, PID and arguments) with OMP_WAIT_POLICY=passive added when
 * the environment does not set it. The variable being set ends the loop, and a value the user
 * set (active, say) is kept. Returns only when there was nothing to do or the exec failed
 * (then the program goes on with libgomp's default). */
#ifndef ECS_API_OMP_WAIT_H
#define ECS_API_OMP_WAIT_H

void api_omp_passive(char **argv);

#endif
