/**
 * Default calibration text for profiling expert importance: plain English prose
 * of mixed registers (narrative, instructions, dialogue, numbers), so the router
 * sees a spread of token kinds. Any text works; the profile only needs tokens
 * that route the way served text does.
 */
export const CALIBRATION_TEXT = `Once upon a time, in a small town by the sea, there lived an old clockmaker who
repaired every clock in the valley. Each morning he opened his shop at seven, made a cup of tea, and
listened to the ticking walls. "Time is patient," he told the children who came to watch, "but it never
waits." To set a pendulum clock, first level the case, then move the minute hand forward, never
backward, until the chime sounds; wait for it to finish before you turn the hand again. In 1887 the
town council bought a tower clock with four faces, 2.5 metres across, and asked him to keep it right.
He climbed 124 steps twice a week. The question of how machines should keep time is older than the
machines themselves: sundials, water clocks and candles each traded accuracy for cost. A good
explanation names the trade-off, shows an example, and says what would change the answer. Would you
like to know more? Yes, please describe the escapement, and explain why it matters for accuracy.
The escapement releases the gear train one tooth at a time, so the energy of the spring leaves in
small, equal steps; without it the clock would run down in seconds. Meanwhile the weather turned:
rain came over the hills, the harbour filled with boats, and the market closed early. By evening the
streets were quiet again, and the clocks, as always, agreed on the hour.`;
