'use strict';
// Command-line handling shared by the host benchmarks: options parsed with
// node:util's parseArgs (defaults applied by hand: parseArgs' `default`
// needs Node 18.11+), a usage line on a bad argument and exit status 2.

const { parseArgs } = require('node:util');

/**
 * Parses process.argv for `options` (parseArgs' shape). Returns the values
 * and `positiveInt(name, text)`, which turns an option's text into a safe
 * integer ≥ 1 or exits with the usage.
 */
function benchArgs(usageLine, options) {
  const usage = (problem) => {
    console.error(`${problem}\nusage: ${usageLine}`);
    process.exit(2);
  };
  let values;
  try {
    ({ values } = parseArgs({ options }));
  } catch (err) {
    usage(err.message);
  }
  const positiveInt = (name, text) => {
    const n = Number(text);
    if (!Number.isSafeInteger(n) || n < 1) usage(`--${name} must be a positive integer, got ${text}`);
    return n;
  };
  return { opts: values, positiveInt };
}

module.exports = { benchArgs };
