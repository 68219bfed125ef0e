"""python examples/client.py tile.jpg: saves the defect mask as mask.png, prints the regions."""

import os
import sys

import httpx

api = os.environ.get("API_URL", "http://localhost:8000")
with open(sys.argv[1], "rb") as photo:
    image = {"image": photo.read()}
mask = httpx.post(f"{api}/segment", files=image, timeout=60)
answer = httpx.post(f"{api}/segment?format=json", files=image, timeout=60)
if answer.is_error:  # a mistake comes back as one sentence saying what to send instead
    sys.exit(answer.json()["error"])
with open("mask.png", "wb") as out:
    out.write(mask.content)
print(f"defective: {answer.json()['defective']}, score {answer.json()['score']}")
for region in answer.json()["regions"]:
    print(region)
