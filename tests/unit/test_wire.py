"""The top-level wire scan agrees with the protobuf decoder on what a field's bytes are."""

from __future__ import annotations

from service.proto_gen.pose3d.v1 import pose3d_pb2 as pb
from service.rpc.wire import field_bytes

KEYPOINTS = pb.EstimateRequest.DESCRIPTOR.fields_by_name["keypoints"].number


def request(frames: int) -> pb.EstimateRequest:
    keypoints = pb.KeypointsInput(image_width=640, image_height=480, timestamps_s=[0.04 * i for i in range(frames)])
    keypoints.frames.extend([pb.Keypoints2D(xy=[1.5] * 34, scores=[0.5] * 17)] * frames)
    return pb.EstimateRequest(keypoints=keypoints, options=pb.Options(model="m", every_nth=3), request_id="r")


def test_the_field_size_is_that_of_its_serialised_message() -> None:
    for frames in (0, 1, 1000):
        msg = request(frames)
        assert field_bytes(msg.SerializeToString(), KEYPOINTS) == msg.keypoints.ByteSize()
    assert field_bytes(pb.EstimateRequest(image=b"x" * 300).SerializeToString(), KEYPOINTS) == 0


def test_repeated_occurrences_add_up_as_the_parser_merges_them() -> None:
    one = request(10).SerializeToString()
    twice = one + one
    assert len(pb.EstimateRequest.FromString(twice).keypoints.frames) == 20
    assert field_bytes(twice, KEYPOINTS) == 2 * request(10).keypoints.ByteSize()


def test_malformed_messages_are_left_to_the_decoder() -> None:
    raw = request(3).SerializeToString()
    assert field_bytes(raw[:-1], KEYPOINTS) is None  # a truncated field
    assert field_bytes(b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", KEYPOINTS) is None  # an endless varint
    assert field_bytes(b"\x0b", KEYPOINTS) is None  # a group start (wire type 3)
