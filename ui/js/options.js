// The sysupgrade options as every view offers them: the letter the engine
// takes and a label that says what it does, so that the device view and
// the mass upgrade view use the same words.

/** Each option's letter and label, in the order sysupgrade lists them. */
export const SYSUPGRADE_OPTIONS = [
  ['c', 'Keep every changed file in /etc (-c)'],
  ['o', 'Keep every overwritten file in /etc (-o)'],
  ['n', 'Do not keep the configuration (-n)'],
  ['u', 'Leave out files equal to those in /rom (-u)'],
  ['p', 'Do not restore the partition table (-p)'],
  ['k', 'Keep the list of installed packages (-k)'],
  ['F', 'Flash even when the image checks fail (-F)'],
];
