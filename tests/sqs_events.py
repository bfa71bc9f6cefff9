"""Lambda SQS events built from messages really received from (moto's) SQS."""


def receive_all(sqs, url, expected, visibility_timeout=30):
    messages = []
    while len(messages) < expected:
        batch = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"],
            MessageAttributeNames=["All"], VisibilityTimeout=visibility_timeout,
        ).get("Messages", [])
        if not batch:
            break
        messages += batch
    return messages


def lambda_event(sqs, url, messages):
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return {"Records": [
        {
            "messageId": m["MessageId"],
            "receiptHandle": m["ReceiptHandle"],
            "body": m["Body"],
            "attributes": m.get("Attributes", {}),
            "messageAttributes": m.get("MessageAttributes", {}),
            "md5OfBody": m["MD5OfBody"],
            "eventSource": "aws:sqs",
            "eventSourceARN": arn,
            "awsRegion": "us-east-1",
        }
        for m in messages
    ]}
