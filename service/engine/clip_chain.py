"""A clip's chain of pose-guided frames on the 2D stage, without a turn of the event loop between them.

Frame t's boxes come from frame t-1's keypoints, so a clip's guided frames are detected one after another. Each
clip frame has a :class:`ChainLink`: the detector item it queued (once queued). A guided frame queues its own item
right behind the frame before's, guided by it (:class:`~service.engine.stages.GuidedBy`): the stage thread makes
its boxes from that item's people as soon as they are detected, and runs its forward next, in the same batch when
both are queued by then — one hand-off to the loop for up to a batch of frames instead of one each. Where the guide
does not hold (the frame before has no people, lost its track, or failed) the item comes back unguided and the
frame finds its boxes as before (:func:`~service.engine.pose_guide.load_guided_boxes` and the person detector):
the same boxes and poses either way.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import numpy as np

from service.engine.pose_guide import GuideSettings, guides
from service.engine.stages import DetectItem, GuidedBy
from service.engine.types import ByteImage


@dataclass
class ChainLink:
    """One clip frame's detector item, once queued (``ready`` is set then, or when the frame queues none)."""

    ready: asyncio.Event = field(default_factory=asyncio.Event)
    item: DetectItem | None = None

    def queued(self, item: DetectItem) -> None:
        """Say ``item`` is (about to be, with no await between) queued: the next frame may queue behind it."""
        self.item = item
        self.ready.set()


@dataclass(frozen=True)
class ChainStep:
    """A clip frame's place in the chain: the frame before's link (``None``: not an image frame) and its own."""

    before: ChainLink | None
    own: ChainLink


async def guided_item(
    image: ByteImage, step: ChainStep, frame_index: int, settings: GuideSettings, flips: tuple[bool, bool]
) -> DetectItem | None:
    """The item of clip frame ``frame_index`` (``(H, W, 3) uint8`` ``image``) guided by the frame before's, once that
    one is queued; ``None`` when the frame takes no guide (a person-detector frame) or the frame before queued no
    item."""
    if step.before is None or not guides(frame_index, settings):
        return None
    await step.before.ready.wait()
    before = step.before.item
    if before is None:
        return None
    people = len(before.boxes)  # a guide keeps every person of the frame before, or none
    boxes, scores = np.zeros((people, 4), np.float32), np.ones(people, np.float32)
    return DetectItem(image, boxes, scores, *flips, guided_by=GuidedBy(before, frame_index, settings))
