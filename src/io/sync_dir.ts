/**
 * fsync of a folder, on its own so the I/O workers can have it without
 * loading the rest of fsutil.ts (each module a worker loads costs memory in
 * every worker).
 */

/** fsync of a folder, so a rename or unlink in it survives a power cut. */
export function syncDir(path: string): void {
  if (Deno.build.os === "windows") return;
  try {
    const d = Deno.openSync(path, { read: true });
    try {
      d.syncSync();
    } finally {
      d.close();
    }
  } catch {
    // Some file systems refuse fsync on folders; the rename still happened.
  }
}
