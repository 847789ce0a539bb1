/**
 * A QR code drawn with block characters, two module rows per text line, so
 * an operator on SSH can scan the Baidu login address with a phone. Light
 * modules are drawn (they show light on the usual dark terminal) and a
 * quiet zone of light modules surrounds the code, as scanners need.
 */

import qrcode from "qrcode-generator";

const QUIET = 2;

/** The module matrix of `text` (true = dark), without the quiet zone. */
export function qrMatrix(text: string): boolean[][] {
  const qr = qrcode(0, "L");
  qr.addData(text);
  qr.make();
  const n = qr.getModuleCount();
  return Array.from(
    { length: n },
    (_, r) => Array.from({ length: n }, (_, c) => qr.isDark(r, c)),
  );
}

/** The code as lines of `█ ▀ ▄` and spaces. */
export function renderQr(text: string): string {
  const m = qrMatrix(text);
  const size = m.length + 2 * QUIET;
  const light = (r: number, c: number) => {
    const rr = r - QUIET;
    const cc = c - QUIET;
    if (rr < 0 || cc < 0 || rr >= m.length || cc >= m.length) return true;
    return !m[rr][cc];
  };
  const lines: string[] = [];
  for (let r = 0; r < size; r += 2) {
    let line = "";
    for (let c = 0; c < size; c++) {
      const top = light(r, c);
      const bottom = r + 1 < size ? light(r + 1, c) : false;
      line += top && bottom ? "█" : top ? "▀" : bottom ? "▄" : " ";
    }
    lines.push(line);
  }
  return lines.join("\n");
}
