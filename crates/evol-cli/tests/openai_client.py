"""Drives `evol serve` with the official `openai` Python package.

Usage: python3 openai_client.py BASE_URL API_KEY
Exits non-zero (with a traceback) on the first failed check.
"""
import sys
from concurrent.futures import ThreadPoolExecutor

import openai

base_url, key = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=120)

models = client.models.list()
names = [m.id for m in models.data]
assert names, names
model = names[0]

# Plain completion.
reply = client.chat.completions.create(
    model=model,
    messages=[{"role": "system", "content": "You are terse."}, {"role": "user", "content": "What is the capital of France?"}],
    max_tokens=24,
    temperature=0,
)
text = reply.choices[0].message.content
assert reply.object == "chat.completion"
assert text, reply
assert reply.choices[0].finish_reason in ("stop", "length"), reply
assert reply.usage.prompt_tokens > 5 and 0 < reply.usage.completion_tokens <= 24, reply.usage

# Streaming gives the same text as the plain call, piece by piece.
pieces, finish, usage = [], None, None
for chunk in client.chat.completions.create(
    model=model,
    messages=[{"role": "system", "content": "You are terse."}, {"role": "user", "content": "What is the capital of France?"}],
    max_tokens=24,
    temperature=0,
    stream=True,
    stream_options={"include_usage": True},
):
    if chunk.usage:
        usage = chunk.usage
    for choice in chunk.choices:
        if choice.delta.content:
            pieces.append(choice.delta.content)
        if choice.finish_reason:
            finish = choice.finish_reason
assert "".join(pieces) == text, ("".join(pieces), text)
assert len(pieces) > 1, pieces
assert finish == reply.choices[0].finish_reason
assert usage is not None and usage.completion_tokens == reply.usage.completion_tokens

# Stop strings and max_tokens.
# Greedy, so that the model cannot end its reply early by chance.
r = client.chat.completions.create(
    model=model, messages=[{"role": "user", "content": "Count from 1 to 30."}], max_tokens=3, temperature=0
)
assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 3, r

# Errors come back as the client's typed exceptions.
try:
    client.chat.completions.create(model=model, messages=[{"role": "robot", "content": "x"}])
    raise AssertionError("a bad role was accepted")
except openai.BadRequestError as e:
    assert "role" in str(e), e
try:
    client.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}], max_tokens=-1)
    raise AssertionError("a negative max_tokens was accepted")
except openai.BadRequestError as e:
    assert "max_tokens" in str(e), e
try:
    client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    raise AssertionError("an unknown model was accepted")
except openai.NotFoundError:
    pass
try:
    openai.OpenAI(base_url=base_url, api_key="wrong", max_retries=0).models.list()
    raise AssertionError("a wrong key was accepted")
except openai.AuthenticationError:
    pass

# Many clients at once share the engine's batch.
def ask(i):
    r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": f"Say a word about {i}."}], max_tokens=8)
    return r.usage.completion_tokens

with ThreadPoolExecutor(16) as pool:
    counts = list(pool.map(ask, range(24)))
assert all(0 < c <= 8 for c in counts), counts
print("openai client checks passed")
