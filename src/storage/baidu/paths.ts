/**
 * Remote path rules. Baidu refuses names with `\ ? | " > < : *`, names
 * that start or end with a dot or a blank, and paths over 1000 characters
 * (old PCS rules, assumed to hold). Checking them here skips such an order
 * with its reason before any byte is sent; the server's own refusal (errno
 * -7, 31062, 20022) is handled the same way. Chinese names and spaces
 * inside a name are fine.
 */

// deno-lint-ignore no-control-regex -- control characters are what we refuse
const FORBIDDEN = /[\\?|"><:*\x00-\x1f\x7f]/;
const MAX_PATH = 1000;

/** Why Baidu would refuse this file name, or undefined. */
export function nameProblem(name: string): string | undefined {
  if (name === "") return "the name is empty";
  const bad = FORBIDDEN.exec(name);
  if (bad) {
    return `the name contains "${
      bad[0] < " " ? "a control character" : bad[0]
    }", which Baidu does not allow`;
  }
  if (/^[.\s]|[.\s]$/.test(name)) {
    return "Baidu does not allow a name that starts or ends with a dot or a blank";
  }
  if (name.length > 255) return "the name is longer than 255 characters";
  return undefined;
}

/** Splits `/a/b/c.jpg` into `/a/b` and `c.jpg`. */
export function parentOf(path: string): { dir: string; name: string } {
  const i = path.lastIndexOf("/");
  if (i <= 0) return { dir: "/", name: path.slice(i + 1) };
  return { dir: path.slice(0, i), name: path.slice(i + 1) };
}

/** True when the full path is within Baidu's length limit. */
export function pathFits(path: string): boolean {
  return path.length <= MAX_PATH;
}
