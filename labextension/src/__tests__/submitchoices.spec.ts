import { describe, expect, it } from 'vitest';

import {
  initialChoices,
  parseSetValues,
  readMemory,
  remember,
  REMEMBERED_FILES,
  setValue,
  submitOptions
} from '../submitchoices';

describe('submit dialog memory', () => {
  it('starts empty, and reads a stored memory of a wrong shape as empty', () => {
    const empty = { folder: '', pool: '', poolSetting: '', priority: 'NORMAL', values: {} };
    expect(readMemory(undefined)).toEqual(empty);
    expect(readMemory({ folder: 3, pool: ['x'], priority: 'URGENT', values: 'a=1' })).toEqual(
      empty
    );
    expect(readMemory({ values: { 'a.yaml': 'x=1', 'b.yaml': 7 } }).values).toEqual({
      'a.yaml': 'x=1'
    });
  });

  it('remembers the folder, pool and priority of the last submit, and values per file', () => {
    let m = readMemory(null);
    expect(initialChoices(m, 'exp/train.yaml', 'gpu')).toEqual({
      pool: 'gpu', // nothing remembered: the settings' default pool
      priority: 'NORMAL',
      values: ''
    });
    m = remember(m, 'exp/train.yaml', { pool: 'cpu', priority: 'HIGH', values: 'lr=0.1' }, 'gpu');
    m = remember(m, 'exp/eval.yaml', { pool: 'cpu', priority: 'LOW', values: '' }, 'gpu');
    expect(m.folder).toBe('exp');
    expect(initialChoices(m, 'exp/train.yaml', 'gpu')).toEqual({
      pool: 'cpu',
      priority: 'LOW',
      values: 'lr=0.1'
    });
    expect(initialChoices(m, 'exp/eval.yaml', 'gpu').values).toBe('');
    // the settings' default pool changed since: it wins over the remembered one
    expect(initialChoices(m, 'exp/train.yaml', 'big').pool).toBe('big');
    expect(remember(m, 'top.yaml', { pool: '', priority: 'NORMAL', values: '' }, '').folder).toBe(
      ''
    );
  });

  it(`keeps the values of the last ${REMEMBERED_FILES} files only`, () => {
    let m = readMemory(null);
    for (let i = 0; i <= REMEMBERED_FILES; i++) {
      m = remember(m, `f${i}.yaml`, { pool: '', priority: 'NORMAL', values: `i=${i}` }, '');
    }
    expect(Object.keys(m.values)).toHaveLength(REMEMBERED_FILES);
    expect(m.values['f0.yaml']).toBeUndefined(); // the oldest went
    m = remember(m, 'f1.yaml', { pool: '', priority: 'NORMAL', values: 'i=again' }, '');
    m = remember(m, 'new.yaml', { pool: '', priority: 'NORMAL', values: 'i=new' }, '');
    expect(m.values['f2.yaml']).toBeUndefined(); // f1's new submit made f2 the oldest
    expect(m.values['f1.yaml']).toBe('i=again');
    expect(Object.keys(m.values).slice(-2)).toEqual(['f1.yaml', 'new.yaml']);
  });
});

describe('--set values', () => {
  it('types a value as the CLI does: an integer, else a number, else the text', () => {
    expect(setValue('3')).toBe(3);
    expect(setValue('-3')).toBe(-3);
    expect(setValue('0.001')).toBe(0.001);
    expect(setValue('1e-3')).toBe(0.001);
    expect(setValue('.5')).toBe(0.5);
    expect(setValue('v1.2')).toBe('v1.2');
    expect(setValue('')).toBe('');
    expect(setValue('a=b')).toBe('a=b');
  });

  it('reads KEY=VALUE lines, skips blanks and comments, and names each bad line', () => {
    const { values, problems } = parseSetValues(
      'lr = 0.1\n\n# a comment\nname=run=2\n=5\nepochs\n'
    );
    expect(values).toEqual({ lr: 0.1, name: 'run=2' });
    expect(problems).toEqual([
      'line 5: "=5" is not KEY=VALUE',
      'line 6: "epochs" is not KEY=VALUE'
    ]);
  });

  it('makes the request: no pool for the default, set_values only when given', () => {
    expect(submitOptions({ pool: '', priority: 'NORMAL', values: '' })).toEqual({
      priority: 'NORMAL'
    });
    expect(submitOptions({ pool: 'gpu', priority: 'HIGH', values: 'n=2' })).toEqual({
      pool: 'gpu',
      priority: 'HIGH',
      set_values: { n: 2 }
    });
  });
});
