/**
 * A fault-injection seam for crash-safety tests. The writers call `killPoint` at each point where a
 * kill could leave a file or folder half made (`<name> written`: complete under its temporary name;
 * `<name> renamed`: in place). When the environment variable PNG_KILL_AT names the point, as
 * `<point>` or `<point>#<n>` (its n-th time in this process, from 1), the process kills itself
 * with SIGKILL there, as `kill -9` would. Without the variable it does nothing.
 */
const reached = new Map<string, number>();

export function killPoint(point: string): void {
  const at = process.env.PNG_KILL_AT;
  if (at === undefined) return;
  const [name, nth = '1'] = at.split('#');
  if (name !== point) return;
  const count = (reached.get(point) ?? 0) + 1;
  reached.set(point, count);
  if (count === Number(nth)) process.kill(process.pid, 'SIGKILL');
}
