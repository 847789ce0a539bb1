/** The version; the compile task stamps the build's commit into `BUILD`. */

export const VERSION = "0.1.0";

/** Replaced by scripts/compile.ts in the copy it compiles. */
export const BUILD = "dev";
