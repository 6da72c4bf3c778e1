#!/usr/bin/env python3
# scripts/update_walkthrough_doc.py DOC WALKTHROUGH_BINARY — rewrite the quoted output
# blocks of docs/bnn-training.md from a fresh walkthrough run (tests/test_walkthrough.cpp
# fails until the doc and the program agree). Usage:
#   python3 scripts/update_walkthrough_doc.py docs/bnn-training.md build/apps/walkthrough
import subprocess, sys, re
doc, binary = sys.argv[1], sys.argv[2]
out = subprocess.run([binary], capture_output=True, text=True, check=True).stdout.split('\n')
if out and out[-1] == '': out.pop()
segs, cur = [], []
for l in out:
    if l.startswith('== '):
        segs.append(cur); cur = []
    cur.append(l)
segs.append(cur)
def trim(s):
    while s and s[-1].strip() == '': s.pop()
    while s and s[0].strip() == '': s.pop(0)
    return s
segs = [trim(s) for s in segs]
lines = open(doc).read().split('\n')
res, i, k = [], 0, 0
while i < len(lines):
    if lines[i] == '```':
        j = i + 1
        while lines[j] != '```': j += 1
        body = lines[i+1:j]
        cmd = [body[0]] if body and body[0].startswith('$ build/apps/walkthrough') else []
        res += ['```'] + cmd + segs[k] + ['```']; k += 1
        i = j + 1
        continue
    if lines[i].startswith('```'):
        j = i + 1
        while lines[j] != '```': j += 1
        res += lines[i:j+1]; i = j + 1; continue
    res.append(lines[i]); i += 1
assert k == len(segs), (k, len(segs))
open(doc, 'w').write('\n'.join(res))
