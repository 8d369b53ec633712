/*
 * quickack: (re)install one IPv4 route of the main table with the quickack metric
 * (what `ip route replace ... quickack 1` does; busybox's ip has no such option).
 *
 *   quickack DST PREFIXLEN GATEWAY|- IFNAME PREFSRC|-
 *
 * Why: under COLO++ pre-release an answer may leave the primary once the secondary guest has
 * acknowledged the request. A server that answers after a delay, or a secondary that lags,
 * holds that ACK back for Linux's delayed-ACK timer (40 ms and more) unless the route asks
 * for immediate ACKs. kvd sets TCP_QUICKACK on its own sockets; this covers every other
 * service (redis-server).  Exit status 0 on success, 1 with a message on failure.
 */
#include <arpa/inet.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct request {
    struct nlmsghdr nh;
    struct rtmsg rt;
    char attrs[256];
};

static void add_attr(struct nlmsghdr *nh, unsigned short type, const void *data, size_t len)
{
    struct rtattr *rta = (struct rtattr *)((char *)nh + NLMSG_ALIGN(nh->nlmsg_len));
    rta->rta_type = type;
    rta->rta_len = RTA_LENGTH(len);
    memcpy(RTA_DATA(rta), data, len);
    nh->nlmsg_len = NLMSG_ALIGN(nh->nlmsg_len) + RTA_ALIGN(rta->rta_len);
}

int main(int argc, char **argv)
{
    struct request req;
    struct in_addr dst, gw, src;
    char metrics[RTA_SPACE(sizeof(unsigned int))];
    struct rtattr *quick = (struct rtattr *)metrics;
    unsigned int one = 1, oif;
    int fd, len;
    char reply[1024];

    if (argc != 6 || inet_pton(AF_INET, argv[1], &dst) != 1) {
        fprintf(stderr, "usage: quickack DST PREFIXLEN GATEWAY|- IFNAME PREFSRC|-\n");
        return 1;
    }
    oif = if_nametoindex(argv[4]);
    if (oif == 0) {
        fprintf(stderr, "quickack: no interface %s\n", argv[4]);
        return 1;
    }
    memset(&req, 0, sizeof req);
    req.nh.nlmsg_len = NLMSG_LENGTH(sizeof(struct rtmsg));
    req.nh.nlmsg_type = RTM_NEWROUTE;
    req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE;
    req.rt.rtm_family = AF_INET;
    req.rt.rtm_dst_len = (unsigned char)atoi(argv[2]);
    req.rt.rtm_table = RT_TABLE_MAIN;
    req.rt.rtm_protocol = RTPROT_BOOT;
    req.rt.rtm_type = RTN_UNICAST;
    req.rt.rtm_scope = strcmp(argv[3], "-") ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK;
    if (req.rt.rtm_dst_len)
        add_attr(&req.nh, RTA_DST, &dst, sizeof dst);
    if (strcmp(argv[3], "-")) {
        if (inet_pton(AF_INET, argv[3], &gw) != 1) {
            fprintf(stderr, "quickack: bad gateway %s\n", argv[3]);
            return 1;
        }
        add_attr(&req.nh, RTA_GATEWAY, &gw, sizeof gw);
    }
    if (strcmp(argv[5], "-")) {
        if (inet_pton(AF_INET, argv[5], &src) != 1) {
            fprintf(stderr, "quickack: bad source %s\n", argv[5]);
            return 1;
        }
        add_attr(&req.nh, RTA_PREFSRC, &src, sizeof src);
    }
    add_attr(&req.nh, RTA_OIF, &oif, sizeof oif);
    quick->rta_type = RTAX_QUICKACK;
    quick->rta_len = RTA_LENGTH(sizeof one);
    memcpy(RTA_DATA(quick), &one, sizeof one);
    add_attr(&req.nh, RTA_METRICS, metrics, RTA_SPACE(sizeof one));

    fd = socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
    if (fd < 0 || send(fd, &req, req.nh.nlmsg_len, 0) < 0) {
        perror("quickack: netlink");
        return 1;
    }
    len = (int)recv(fd, reply, sizeof reply, 0);
    if (len >= (int)NLMSG_LENGTH(sizeof(struct nlmsgerr))) {
        struct nlmsghdr *nh = (struct nlmsghdr *)reply;
        struct nlmsgerr *err = NLMSG_DATA(nh);
        if (nh->nlmsg_type == NLMSG_ERROR && err->error != 0) {
            fprintf(stderr, "quickack: %s\n", strerror(-err->error));
            return 1;
        }
    }
    close(fd);
    return 0;
}
